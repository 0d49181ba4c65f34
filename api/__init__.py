"""The token API for programs that are not Python: `GET /api/tokens/<reference>/` with an API
key (views.py), the keys themselves (models.py, keys.py: made, checked, throttled, revoked),
their admin page and `manage.py create_api_key`. Above portals: it reads tokens through
portals.tokens, never writes their state."""
