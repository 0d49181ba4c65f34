"""A wire-level fake of Mandrill's messages/send.json and messages/info.json
(docs/notification-providers.md §4).

Wrong keys get the historical answer (HTTP 500, code -1, name Invalid_Key); the 2026 variant
(HTTP 401, code 401) is the `invalid_key_401` fault. A 200 can still carry a rejection, or a
"queued" whose `queued_reason=` (option of the `queued` fault) says the account cannot send.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

from .providers import FakeProviderServer, RecordedRequest, Reply

API_KEY = "md-FAKEKEY0000000000000000"
FROM_EMAIL = "alerts@example.com"
FROM_NAME = "Acme Alerts"

_TOP_LEVEL = {"key", "message", "async", "ip_pool", "send_at"}
_MESSAGE = {
    "from_email", "from_name", "to", "subject", "text", "html", "headers", "tags", "metadata",
    "track_opens", "track_clicks", "important", "auto_text", "auto_html", "inline_css",
    "preserve_recipients", "view_content_link", "bcc_address", "tracking_domain",
    "signing_domain", "return_path_domain", "merge", "merge_language", "global_merge_vars",
    "merge_vars", "subaccount", "recipient_metadata", "attachments", "images",
}  # fmt: skip
_ENCODED_WORD = re.compile(r"=\?[^?]+\?[bBqQ]\?")
# messages/info.json `state` for each fate; an undelivered one takes `state=` (bounced,
# soft-bounced, rejected, …) and `diag=` (the receiving server's answer).
_STATES = {"pending": "deferred", "delivered": "sent", "undelivered": "soft-bounced"}
_DIAGS = {"deferred": "451 4.3.5 Try again later", "sent": "250 2.0.0 OK"}


def mandrill_error(status: int, code: int, name: str, message: str) -> Reply:
    return Reply(status, {"status": "error", "code": code, "name": name, "message": message})


class FakeMandrill(FakeProviderServer):
    name = "mandrill"
    path_prefix = "/api/1.0"
    # Whole-call errors: kind -> (HTTP status, code, name, message).
    errors = {
        "invalid_key": (500, -1, "Invalid_Key", "Invalid API key"),
        "invalid_key_401": (401, 401, "Invalid_Key", "Invalid API key"),
        "validation_error": (500, -1, "ValidationError", "Validation error: {'message': ...}"),
        "payment_required": (402, 10, "PaymentRequired", "This feature is only available to "
                             "paid accounts"),
        "unknown_subaccount": (404, 12, "Unknown_Subaccount", "No subaccount exists with the id"),
        "general_error": (500, -1, "GeneralError", "An unexpected error occurred"),
        "service_unavailable": (503, -2, "ServiceUnavailable", "Service temporarily unavailable"),
        # Per-recipient outcomes inside an HTTP 200; `reason=` picks the reject_reason.
        "rejected": (200, 0, "rejected", "hard-bounce"),
        "invalid": (200, 0, "invalid", ""),
        "queued": (200, 0, "queued", "hourly-quota-exhausted"),
        # A plain-text 500, as anymail's own tests replay it.
        "plain_text_error": (500, 0, "", "Invalid API key"),
    }  # fmt: skip

    def __init__(self, api_key: str = API_KEY, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.api_key = api_key
        self._sent: dict[str, tuple[str, str]] = {}  # message id -> (recipient, subject)

    def problems(self, request: RecordedRequest) -> list[str]:
        problems = []
        expected = f"{self.path_prefix}/messages/send.json"
        if (request.method, request.path) != ("POST", expected):
            problems.append(f"expected POST {expected}, got {request.method} {request.path}")
        if request.content_type != "application/json" or not isinstance(request.body, dict):
            return [*problems, f"expected a JSON object, got {request.content_type or 'none'}"]
        body = request.body
        problems += [f"unknown field {name!r}" for name in set(body) - _TOP_LEVEL]
        message = body.get("message")
        if not isinstance(message, dict):
            return [*problems, "message is missing"]
        problems += [f"unknown message field {name!r}" for name in set(message) - _MESSAGE]
        to = message.get("to")
        if (
            not isinstance(to, list)
            or not to
            or not all(
                isinstance(r, dict)
                and r.get("email")
                and r.get("type", "to") in ("to", "cc", "bcc")
                for r in to
            )
        ):
            problems.append(f"message.to must be a list of {{email, type}}, got {to!r}")
        problems += [f"message.{name} is missing" for name in ("from_email", "subject")
                     if not message.get(name)]  # fmt: skip
        if not (message.get("text") or message.get("html")):
            problems.append("message has neither text nor html")
        if _ENCODED_WORD.search(str(message.get("from_name", ""))):
            problems.append(
                f"from_name is RFC 2047-encoded; Mandrill shows it literally: "
                f"{message['from_name']!r}"
            )
        return problems

    def authenticate(self, request: RecordedRequest) -> Reply | None:
        if request.body.get("key") != self.api_key:
            return self.error_reply("invalid_key", request, {})
        return None

    def success(self, request: RecordedRequest) -> Reply:
        message = request.body["message"]
        return Reply(200, [self._recipient(r["email"], "sent", message) for r in message["to"]])

    def _recipient(self, email: str, status: str, message: Any, **extra: Any) -> dict[str, Any]:
        item: dict[str, Any] = {"email": email, "status": status, "reject_reason": None}
        if status in ("sent", "queued", "scheduled"):
            # Missing for rejected and invalid recipients.
            item["_id"] = self.register(uuid.uuid4().hex)
            self._sent[item["_id"]] = (email, str(message.get("subject")))
        return {**item, **extra}

    def bad_request(self, request: RecordedRequest, problems: list[str]) -> Reply:
        # What Mandrill historically said to a body that was not JSON.
        return mandrill_error(500, -1, "ValidationError", "You must specify a key value")

    def error_reply(self, kind: str, request: RecordedRequest, options: dict[str, Any]) -> Reply:
        status, code, name, message = self.errors[kind]
        if kind == "plain_text_error":
            return Reply(status, message, content_type="text/plain; charset=utf-8")
        if status != 200:
            return mandrill_error(status, code, name, message)
        sent = request.body["message"]
        emails = [r["email"] for r in sent["to"]]
        if kind == "queued":
            why = options.get("queued_reason", message)
            return Reply(200, [self._recipient(e, name, sent, queued_reason=why) for e in emails])
        reason = options.get("reason", message or None)
        return Reply(200, [self._recipient(e, name, sent, reject_reason=reason) for e in emails])

    def rate_limit_body(self, request: RecordedRequest) -> Any:
        return mandrill_error(429, 429, "RequestLimitExceeded", "Too many requests").body

    # --- messages/info.json ---------------------------------------------------------------
    def is_status_request(self, request: RecordedRequest) -> bool:
        return request.path == f"{self.path_prefix}/messages/info.json"

    def status_problems(self, request: RecordedRequest) -> list[str]:
        problems = [] if request.method == "POST" else [f"expected POST, got {request.method}"]
        body = request.body
        if request.content_type != "application/json" or not isinstance(body, dict):
            return [*problems, f"expected a JSON object, got {request.content_type or 'none'}"]
        return problems + [f"unexpected field {name!r}" for name in set(body) ^ {"key", "id"}]

    def status_message_id(self, request: RecordedRequest) -> str:
        return str(request.body.get("id"))

    def unknown_message(self, request: RecordedRequest, message_id: str) -> Reply:
        return mandrill_error(
            500, 11, "Unknown_Message", f"No message exists with the id '{message_id}'"
        )

    def status_reply(
        self, request: RecordedRequest, message_id: str, state: str, details: dict[str, Any]
    ) -> Reply:
        email, subject = self._sent[message_id]
        state = details.get("state", _STATES[state]) if state == "undelivered" else _STATES[state]
        diag = details.get("diag", _DIAGS.get(state, "452 4.2.2 Mailbox full"))
        event = {"ts": 1772532005, "type": state, "diag": diag}
        body = {
            "ts": 1772532000,
            "_id": message_id,
            "sender": FROM_EMAIL,
            "template": None,
            "subject": subject,
            "email": email,
            "tags": [],
            "opens": 0,
            "clicks": 0,
            "state": state,
            "metadata": {},
            "smtp_events": [event],
        }
        return Reply(200, body)
