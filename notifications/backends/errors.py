"""Errors of a notification delivery: transient (retry later) or permanent (a person must act).

A `DeliveryError` never holds a secret. Backends build it from sanitized text and never chain a
third-party exception into it: the text of a `requests` exception holds the request URL, and
Telegram's bot token is part of that URL.
"""


class ConfigurationError(Exception):
    """The backend cannot even try: a credential, the destination or a setting is missing or
    malformed. Deliberately outside the DeliveryError tree, so a broad `except DeliveryError`
    in a retry loop cannot swallow it."""


class DeliveryError(Exception):
    """The provider refused the message or could not be reached."""

    permanent: bool = False

    def __init__(
        self,
        description: str,
        *,
        code: str,
        provider: str,
        advice: str = "",
        retry_after: float | None = None,
        http_status: int | None = None,
        from_provider: bool = True,
    ) -> None:
        self.description = description
        self.code = code
        self.provider = provider
        self.advice = advice
        self.retry_after = retry_after
        self.http_status = http_status
        # True when `description` is the provider's own words, False when it is ours
        # (e.g. "did not answer within 20 s"); only changes how the sentence reads.
        self.from_provider = from_provider
        super().__init__(description)

    def __str__(self) -> str:
        what = self.description.rstrip(". ")
        head = f"{self.provider} says: {what}" if self.from_provider else f"{self.provider} {what}"
        text = f"{head} ({self.code})."
        if self.advice:
            text += f" {self.advice}"
        if self.retry_after is not None:
            text += f" Retry in no less than {self.retry_after:g} s."
        return text

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(provider={self.provider!r}, code={self.code!r}, "
            f"description={self.description!r}, retry_after={self.retry_after!r})"
        )


class TransientDeliveryError(DeliveryError):
    """Retry later (with backoff, or after `retry_after` seconds when the provider said)."""

    permanent = False


class PermanentDeliveryError(DeliveryError):
    """Retrying will not help: stop using this channel until a person fixes the cause."""

    permanent = True
