"""Telegram bot messages through the Bot API's `sendMessage` (docs/notification-providers.md §6).

One JSON POST by hand: python-telegram-bot is async-only, not worth an event loop per Celery
task. The bot token is part of the URL path, so this module also keeps it out of urllib3's
debug log, and the base never chains a requests exception (its text holds the URL).
"""

import logging
import re
from collections.abc import Mapping
from dataclasses import replace
from typing import Any
from urllib.parse import quote

from django.utils.translation import gettext_lazy as _
from django.utils.translation import gettext_noop

from .base import Backend, CredentialField, HttpAnswer, HttpRequest, Message, Rule, SendResult
from .errors import PermanentDeliveryError

MAX_TEXT = 4096  # characters, after entity parsing; plain text here, so simply characters
_TOKEN_IN_PATH = re.compile(r"/bot[^/\s\"']+")
# Records with URLs come from these loggers; a logger's filters only see its own records.
_URLLIB3_LOGGERS = (
    "urllib3.connectionpool",
    "urllib3.connection",
    "urllib3.poolmanager",
    "urllib3.response",
    "urllib3.util.retry",
)
_KICKED = Rule(True, gettext_noop("Add the bot to the group again, then re-enable this channel."))
_BUG = Rule(True, gettext_noop("This is a bug in b24keeper, please report it."))
_FORBIDDEN = Rule(
    True,
    gettext_noop(
        "Telegram does not let the bot write to this chat: the person must start the bot, or the "
        "bot must be a member of the group. Then re-enable this channel."
    ),
)


class _RedactBotToken(logging.Filter):
    """urllib3 logs every request line ("POST /bot<token>/sendMessage") at DEBUG."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = _TOKEN_IN_PATH.sub("/bot[redacted]", message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


_REDACT_FILTER = _RedactBotToken()


def _install_log_filter() -> None:
    for name in _URLLIB3_LOGGERS:
        urllib3_logger = logging.getLogger(name)
        if _REDACT_FILTER not in urllib3_logger.filters:
            urllib3_logger.addFilter(_REDACT_FILTER)


class ChatMigratedError(PermanentDeliveryError):
    """The group became a supergroup with a new chat id; the old id will never work again."""

    def __init__(self, new_chat_id: str, **kwargs: Any) -> None:
        self.new_chat_id = new_chat_id
        super().__init__(**kwargs)


def _key(description: str) -> str:
    """'Forbidden: bot was blocked by the user' -> 'bot was blocked by the user'."""
    return re.sub(r"^(bad request|forbidden): ", "", description.strip().lower())


def _object(value: object) -> dict[str, Any]:
    """A JSON object from the answer, or {} when the Bot API sent anything else there."""
    return value if isinstance(value, dict) else {}


def _seconds(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) and value >= 0 else None


class TelegramBackend(Backend):
    kind = "telegram"
    label = "Telegram"
    destination_kind = "telegram_chat"
    api_url_setting = "TELEGRAM_API_URL"
    credential_fields = (
        CredentialField(
            "bot_token",
            _("Bot token"),
            secret=True,
            help_text=_(
                "From @BotFather, like 123456789:AAF…; the recipient must press Start in "
                "a chat with this bot (or add it to the group) before it can write to them."
            ),
        ),
    )
    # Keyed by the description without its "Bad Request: " / "Forbidden: " prefix, lowercase:
    # the Bot API has no finer error code than the HTTP status.
    errors = {
        "chat not found": Rule(
            True,
            gettext_noop(
                "Check the chat id. A person must open the bot and press Start first; for a group, "
                "add the bot to it. Then re-enable this channel."
            ),
        ),
        "bot was blocked by the user": Rule(
            True, gettext_noop("Ask the recipient to unblock the bot, then re-enable this channel.")
        ),
        "user is deactivated": Rule(
            True,
            gettext_noop("The recipient's Telegram account was deleted; choose another recipient."),
        ),
        "bot was kicked from the group chat": _KICKED,
        "bot was kicked from the supergroup chat": _KICKED,
        "bot was kicked from the channel chat": _KICKED,
        "the group chat was deleted": Rule(
            True, gettext_noop("The group was deleted; choose another chat.")
        ),
        "bot can't initiate conversation with a user": Rule(
            True,
            gettext_noop(
                "Ask the recipient to open the bot and press Start, then re-enable this channel."
            ),
        ),
        "message is too long": _BUG,
        "message text is empty": _BUG,
        "unauthorized": Rule(
            True,
            gettext_noop(
                "The bot token was revoked or is wrong. Paste a current token from @BotFather, "
                "then re-enable this channel."
            ),
        ),
        "not found": Rule(
            True,
            gettext_noop(
                "The bot token is malformed. Copy it again from @BotFather, then re-enable."
            ),
        ),
    }

    def __init__(self, credentials: Mapping[str, str], destination: str) -> None:
        super().__init__(credentials, destination)
        _install_log_filter()

    def build_request(self, message: Message) -> HttpRequest:
        chat_id: int | str = self.destination
        if self.destination.lstrip("-").isdigit():
            chat_id = int(self.destination)
        text = message.text
        if len(text) > MAX_TEXT:  # a cut alert beats a "message is too long" error
            text = text[: MAX_TEXT - 1] + "…"
        token = quote(self.credentials["bot_token"], safe=":")
        return HttpRequest(
            url=f"{self.api_url}/bot{token}/sendMessage",
            # No parse_mode: plain text cannot fail on a stray "<" or "_" in the alert.
            json={"chat_id": chat_id, "text": text, "link_preview_options": {"is_disabled": True}},
        )

    def parse_response(self, answer: HttpAnswer) -> SendResult:
        body = answer.body if isinstance(answer.body, dict) else {}
        if body.get("ok") is True and 200 <= answer.status < 300:
            result = _object(body.get("result"))
            chat_id = (result.get("chat") or {}).get("id", self.destination)
            if result.get("message_id") is None:
                raise self.unexpected(answer, "answered ok without a message_id")
            return SendResult(
                provider_message_id=f"{chat_id}:{result['message_id']}",
                detail=f"Telegram delivered message {result['message_id']} to chat {chat_id}.",
            )
        description = str(body.get("description") or f"HTTP {answer.status}")
        code = str(body.get("error_code") or answer.status)
        parameters = _object(body.get("parameters"))
        if parameters.get("migrate_to_chat_id"):
            new_chat_id = str(parameters["migrate_to_chat_id"])
            raise ChatMigratedError(
                new_chat_id,
                description=_key(description),
                code=code,
                provider=self.label,
                advice=f"The group is now a supergroup with chat id {new_chat_id}; "
                "b24keeper resends there once. Store the new chat id on this channel.",
                http_status=answer.status,
            )
        raise self.error(
            code,
            re.sub(r"^(Bad Request|Forbidden): ", "", description),
            answer,
            key=_key(description),
            retry_after=_seconds(parameters.get("retry_after")),
            fallback=_FORBIDDEN if answer.status == 403 else None,
        )

    def deliver(self, message: Message) -> SendResult:
        try:
            return super().deliver(message)
        except ChatMigratedError as moved:
            new_chat_id = moved.new_chat_id
        # Healthchecks does the same: the old id is dead and the new one is given, so send once
        # more; a second migration answer is raised as the permanent error it is.
        self.destination = new_chat_id
        result = super().deliver(message)
        return replace(
            result,
            new_destination=new_chat_id,
            detail=f"{result.detail} The group became a supergroup: store chat id "
            f"{new_chat_id} on this channel.",
        )
