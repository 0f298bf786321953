"""Service callers: backends that call Zoom as the account with keys the proxy issues."""
