"""Everything that speaks to Bitrix24 (docs/bitrix24-protocol.md): the OAuth client
(oauth.py), one REST request (transport.py) and the REST client's machinery (rest.py), the one
table of verdicts on errors (errors.py), where secrets may go (authservers.py), Bitrix24's
identifier formats (identifiers.py) and the portals' shared rate limit (ratelimit.py). Plain:
credentials in, a typed result or a typed error out; no model is read or written here (the rate
limiter keeps its buckets in Redis or one table of its own). Anyone in portals may call it."""
