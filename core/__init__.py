"""The ground floor: small helpers every app may use and that use no app of ours. HTTP sessions
(http.py), enqueueing tasks by name (publish.py), log redaction and JSON lines (logging.py),
the gunicorn access logger (gunicorn.py), control characters at the public edge (middleware.py),
error reports without secrets (error_reports.py), the client address behind proxies
(client_ip.py), staff roles (roles.py), periodic tasks made by migrations (beat.py), how values
look (display.py), and the admin pages of third-party apps (thirdparty_admin.py). Imports
nothing from portals, notifications, api, dashboard or ops (checked by import-linter)."""
