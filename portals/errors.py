"""Kept for code written before the rooms, which imported `portals.errors.OAuthError` as the
README showed: the exceptions now live in portals.bitrix.errors (and are importable from
portals.tokens, the public API)."""

from portals.bitrix.errors import ConfigurationError, OAuthError

__all__ = ["ConfigurationError", "OAuthError"]
