"""Alembic migrations of the server database (configured in code: :mod:`suitkit.server.migrate`)."""
