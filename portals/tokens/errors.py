"""The errors of the token service, besides Bitrix24's own (portals.bitrix.errors.OAuthError):
what get_access_token(), get_token() and refresh() raise. Re-exported by portals.tokens, the
public API."""


class TokenError(Exception):
    """Base of the errors get_access_token() and refresh() raise besides OAuthError."""


class TokenNotFound(TokenError, LookupError):
    pass


class TokenUnavailable(TokenError):
    """The token cannot be used until a person acts (re-connect, enable, pay, fix a setting).
    `status` is the token's status (a portals.models.TokenStatus value) when known."""

    def __init__(self, message: str, status: str = "") -> None:
        super().__init__(message)
        self.status = status


class TokenConfigurationError(TokenUnavailable):
    """A setting stops the token from being used or refreshed: its stored secrets cannot be
    decrypted with ENCRYPTION_KEYS, or its authorization server is not in BITRIX_AUTH_SERVERS.
    `setting` names the setting to fix."""

    def __init__(self, message: str, setting: str) -> None:
        super().__init__(message, status="config_error")
        self.setting = setting


class RefreshBusy(TokenError):
    """Another process's refresh did not finish within TOKEN_REFRESH_WAIT."""


class PairNotStored(TokenError):
    """Bitrix24 issued a new pair but the database stayed unreachable for TOKEN_STORE_RETRY
    seconds. The pair is safe in the local journal and is stored when the database is back
    (at the next start, or before this machine next refreshes the token)."""
