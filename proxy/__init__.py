"""zoom-proxy: an authenticating reverse proxy for the Zoom REST API."""

__version__ = "0.1.0"
