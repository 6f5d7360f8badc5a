"""The update service: RFC 9019's firmware server and status tracker (``suitkit[server]``).

- operators (authors' release managers, device operators) upload signed envelopes and their
  payloads, register devices and run staged campaigns through ``/api/v1`` and the dashboard;
- devices check in, download the envelope, its severed members and payloads (``/device/v1``),
  and upload signed SUIT_Reports (draft-ietf-suit-report), which become the campaign's state.

Nothing in the core library imports this package: it needs the ``server`` extra (FastAPI,
SQLAlchemy, Alembic, Jinja2, uvicorn). Entry points: :func:`suitkit.server.app.create_app` and
``suitkit serve`` (:mod:`suitkit.cli.server`).
"""
