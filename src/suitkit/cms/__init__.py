"""CMS-protected firmware packages (RFC 4108)."""
