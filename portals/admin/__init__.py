"""The admin pages of portals: tokens, the staff's home (tokens.py, with the token's own pages
and buttons in token_views.py), and portals, app credentials and the refresh audit log
(credentials.py). Django's admin autodiscovery imports this package; importing the modules
registers their pages. Thin: they call portals.connect and portals.tokens, never the ORM
for a token's state."""

from portals.admin import credentials, tokens

__all__ = ["credentials", "tokens"]
