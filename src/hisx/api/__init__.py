"""The share interfaces (数据共享层): REST ``/api/v1``, SOAP 1.1 ``/ws`` and named SQL queries,
with per-center API keys, scopes, rate limits and an append-only audit trail.
See ``docs/api.md``; :func:`hisx.api.app.create_app` builds the application."""
