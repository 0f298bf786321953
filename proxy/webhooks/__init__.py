"""Zoom's event notifications (SPEC 14): verified, answered, acted on and passed on."""
