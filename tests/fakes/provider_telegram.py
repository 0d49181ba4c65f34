"""A wire-level fake of the Telegram Bot API's sendMessage (docs/notification-providers.md §6).

Like the real API it answers 401 to a well-formed but unknown token and 404 to a malformed one.
"""

from __future__ import annotations

import itertools
import re
import time
from typing import Any

from .providers import FakeProviderServer, RecordedRequest, Reply

BOT_TOKEN = "123456789:AAFakeTokenForTests_abcdefghijklmnopq"
CHAT_ID = 987654321
SUPERGROUP_ID = -1001234567890

_PATH_RE = re.compile(r"/bot([^/]*)/(\w+)")
_TOKEN_RE = re.compile(r"\d+:[A-Za-z0-9_-]{30,}")
_FIELDS = {
    "chat_id",
    "text",
    "parse_mode",
    "message_thread_id",
    "disable_notification",
    "link_preview_options",
    "disable_web_page_preview",
}


def telegram_error(status: int, description: str, **parameters: Any) -> Reply:
    body: dict[str, Any] = {"ok": False, "error_code": status, "description": description}
    if parameters:
        body["parameters"] = parameters
    return Reply(status, body)


class FakeTelegram(FakeProviderServer):
    name = "telegram"
    # kind -> (HTTP status, description)
    errors = {
        "chat_not_found": (400, "Bad Request: chat not found"),
        "bot_blocked": (403, "Forbidden: bot was blocked by the user"),
        "user_deactivated": (403, "Forbidden: user is deactivated"),
        "bot_kicked": (403, "Forbidden: bot was kicked from the group chat"),
        "bot_kicked_supergroup": (403, "Forbidden: bot was kicked from the supergroup chat"),
        "group_deleted": (403, "Forbidden: the group chat was deleted"),
        "cant_initiate": (403, "Forbidden: bot can't initiate conversation with a user"),
        "message_too_long": (400, "Bad Request: message is too long"),
        "cant_parse_entities": (
            400,
            "Bad Request: can't parse entities: Can't find end of the entity starting at "
            "byte offset 12",
        ),
        # `new_chat_id=` picks the supergroup's id.
        "migrated": (400, "Bad Request: group chat was upgraded to a supergroup chat"),
        "unauthorized": (401, "Unauthorized"),
        "not_found": (404, "Not Found"),
    }

    def __init__(self, token: str = BOT_TOKEN, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.token = token
        self._message_ids = itertools.count(4711)

    def problems(self, request: RecordedRequest) -> list[str]:
        problems = []
        match = _PATH_RE.fullmatch(request.path)
        if request.method != "POST" or not match or match.group(2) != "sendMessage":
            problems.append(f"expected POST /bot<token>/sendMessage, got {request.method} "
                            f"{request.path}")  # fmt: skip
        if request.content_type != "application/json" or not isinstance(request.body, dict):
            return [*problems, f"expected a JSON object, got {request.content_type or 'none'}"]
        body = request.body
        problems += [f"unknown field {name!r}" for name in set(body) - _FIELDS]
        chat_id = body.get("chat_id")
        if not isinstance(chat_id, int) and not re.fullmatch(r"@\w{4,}", str(chat_id)):
            problems.append(f"chat_id must be an integer or @channel, got {chat_id!r}")
        if not isinstance(body.get("text"), str) or not body["text"]:
            problems.append("text is missing")
        return problems

    def authenticate(self, request: RecordedRequest) -> Reply | None:
        match = _PATH_RE.fullmatch(request.path)
        token = match.group(1) if match else ""
        if not _TOKEN_RE.fullmatch(token):
            return telegram_error(404, "Not Found")
        if token != self.token:
            return telegram_error(401, "Unauthorized")
        if len(request.body["text"]) > 4096:
            return telegram_error(400, "Bad Request: message is too long")
        return None

    def success(self, request: RecordedRequest) -> Reply:
        chat_id = request.body["chat_id"]
        chat: dict[str, Any] = {"id": chat_id, "type": "private", "first_name": "Ann"}
        if isinstance(chat_id, int) and chat_id < 0:
            chat = {"id": chat_id, "type": "supergroup", "title": "Acme on-call"}
        bot_id = int(self.token.split(":")[0])
        result = {
            "message_id": next(self._message_ids),
            "date": int(time.time()),
            "chat": chat,
            "from": {"id": bot_id, "is_bot": True, "username": "acme_alert_bot"},
            "text": request.body["text"],
        }
        return Reply(200, {"ok": True, "result": result})

    def bad_request(self, request: RecordedRequest, problems: list[str]) -> Reply:
        if not request.path.endswith("/sendMessage"):
            return telegram_error(404, "Not Found")
        return telegram_error(400, "Bad Request: " + "; ".join(problems))

    def error_reply(self, kind: str, request: RecordedRequest, options: dict[str, Any]) -> Reply:
        status, description = self.errors[kind]
        if kind == "migrated":
            new_chat_id = options.get("new_chat_id", SUPERGROUP_ID)
            return telegram_error(status, description, migrate_to_chat_id=new_chat_id)
        return telegram_error(status, description)

    def rate_limit_reply(self, request: RecordedRequest, options: dict[str, Any]) -> Reply:
        # Telegram puts the wait in the body (a 2016 capture shows no Retry-After header).
        seconds = options.get("retry_after", 35)
        reply = telegram_error(
            429, f"Too Many Requests: retry after {seconds}", retry_after=seconds
        )
        if options.get("header"):
            reply.headers["Retry-After"] = str(seconds)
        return reply
