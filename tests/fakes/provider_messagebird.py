"""A wire-level fake of the legacy MessageBird REST API (docs/notification-providers.md §2):
POST /messages, and GET /messages/<id> for the recipient's delivery status.

Like the real API it takes a JSON or a form body, and `recipients` as an array or a comma
string.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

from .providers import FakeProviderServer, RecordedRequest, Reply, is_gsm7

ACCESS_KEY = "mb-live-FAKEaccesskey000000000"
ORIGINATOR = "AcmeOps"

_MSISDN_RE = re.compile(r"\+?[1-9]\d{6,14}")
_MESSAGE_RE = re.compile(r"/messages/([0-9a-f]+)")
_ORIGINATOR_RE = re.compile(r"[A-Za-z0-9 ]{1,11}|\+?\d{3,16}")
_FIELDS = {
    "originator",
    "recipients",
    "body",
    "reference",
    "validity",
    "datacoding",
    "reportUrl",
    "type",
    "scheduledDatetime",
    "groupIds",
    "shortenUrls",
    "typeDetails",
    "gateway",
}


def messagebird_errors(status: int, *errors: tuple[int, str, str | None]) -> Reply:
    return Reply(
        status,
        {
            "errors": [
                {"code": code, "description": description, "parameter": parameter}
                for code, description, parameter in errors
            ]
        },
    )


def _recipients(value: Any) -> list[str]:
    if isinstance(value, list):
        return [str(item) for item in value]
    return [item.strip() for item in str(value or "").split(",") if item.strip()]


class FakeMessageBird(FakeProviderServer):
    name = "messagebird"
    # kind -> (HTTP status, [(code, description, parameter), ...])
    errors = {
        "access_key": (401, [(2, "Request not allowed (incorrect access_key)", "access_key")]),
        "no_recipients": (422, [(9, "no (correct) recipients found", "recipients")]),
        "invalid_originator": (422, [(10, "originator is invalid", "originator")]),
        "two_errors": (
            422,
            [
                (9, "no (correct) recipients found", "recipients"),
                (9, "originator is too long", "originator"),
            ],
        ),
        "not_found": (404, [(20, "message not found", None)]),
        # Code 25 is confirmed; the HTTP status that carries it is not.
        "no_balance": (422, [(25, "Not enough balance", None)]),
    }

    def __init__(self, access_key: str = ACCESS_KEY, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.access_key = access_key
        self._sent: dict[str, tuple[dict[str, Any], int]] = {}

    def problems(self, request: RecordedRequest) -> list[str]:
        problems = []
        if (request.method, request.path) != ("POST", "/messages"):
            problems.append(f"expected POST /messages, got {request.method} {request.path}")
        scheme = (request.header("Authorization") or "").split(" ")[0]
        if scheme != "AccessKey":
            problems.append(f"expected Authorization: AccessKey …, got {scheme or 'none'}")
        if "application/json" not in (request.header("Accept") or ""):
            problems.append("expected Accept: application/json")
        if not isinstance(request.body, dict):
            return [*problems, f"expected a JSON or form body, got {request.content_type}"]
        return problems + self._field_problems(request.body)

    @staticmethod
    def _field_problems(body: dict[str, Any]) -> list[str]:
        problems = [f"unknown field {name!r}" for name in body if name not in _FIELDS]
        recipients = _recipients(body.get("recipients"))
        if len(recipients) != 1 or not _MSISDN_RE.fullmatch(recipients[0]):
            problems.append(f"expected one MSISDN in recipients, got {body.get('recipients')!r}")
        if not _ORIGINATOR_RE.fullmatch(str(body.get("originator", ""))):
            problems.append(f"originator is invalid: {body.get('originator')!r}")
        if not body.get("body"):
            problems.append("body is missing")
        elif not is_gsm7(body["body"]):
            problems.append(f"body is not GSM-7, so the SMS would go as UCS-2: {body['body']!r}")
        return problems

    def authenticate(self, request: RecordedRequest) -> Reply | None:
        if request.header("Authorization") != f"AccessKey {self.access_key}":
            return self.error_reply("access_key", request, {})
        return None

    def success(self, request: RecordedRequest) -> Reply:
        body = request.body
        message_id = self.register(uuid.uuid4().hex)
        recipient = int(_recipients(body["recipients"])[0].lstrip("+"))  # a number, not a string
        self._sent[message_id] = (body, recipient)
        return Reply(201, self._message(message_id, body, recipient, "sent", {}))

    def _message(
        self, message_id: str, body: dict[str, Any], recipient: int, status: str, why: dict
    ) -> dict[str, Any]:
        failed = status in ("delivery_failed", "expired")
        item = {
            "recipient": recipient,
            "status": status,
            "statusReason": why.get("reason", "unavailable subscriber") if failed else None,
            "statusErrorCode": why.get("code", 27) if failed else None,
            "statusDatetime": "2026-03-03T10:00:05+00:00",
            "messagePartCount": 1,
        }
        return {
            "id": message_id,
            "href": f"https://rest.messagebird.com/messages/{message_id}",
            "direction": "mt",
            "type": "sms",
            "originator": body["originator"],
            "body": body["body"],
            "reference": None,
            "validity": None,
            "gateway": 10,
            "datacoding": "plain",
            "mclass": 1,
            "scheduledDatetime": None,
            "createdDatetime": "2026-03-03T10:00:00+00:00",
            "recipients": {
                "totalCount": 1,
                "totalSentCount": 1,
                "totalDeliveredCount": int(status == "delivered"),
                "totalDeliveryFailedCount": int(failed),
                "items": [item],
            },
        }

    def bad_request(self, request: RecordedRequest, problems: list[str]) -> Reply:
        return messagebird_errors(422, (9, "; ".join(problems), None))

    def error_reply(self, kind: str, request: RecordedRequest, options: dict[str, Any]) -> Reply:
        status, errors = self.errors[kind]
        return messagebird_errors(status, *errors)

    def rate_limit_body(self, request: RecordedRequest) -> Any:
        # Not documented for the legacy API; the usual error shape without a known code.
        return {"errors": [{"code": 429, "description": "Too Many Requests", "parameter": None}]}

    # --- GET /messages/<id> ---------------------------------------------------------------
    def is_status_request(self, request: RecordedRequest) -> bool:
        return bool(_MESSAGE_RE.fullmatch(request.path))

    def status_problems(self, request: RecordedRequest) -> list[str]:
        problems = []
        if request.method != "GET":
            problems.append(f"expected GET {request.path}, got {request.method}")
        if (request.header("Authorization") or "").split(" ")[0] != "AccessKey":
            problems.append("expected Authorization: AccessKey …")
        return problems

    def status_message_id(self, request: RecordedRequest) -> str:
        return _MESSAGE_RE.fullmatch(request.path).group(1)

    def unknown_message(self, request: RecordedRequest, message_id: str) -> Reply:
        return self.error_reply("not_found", request, {})

    def status_reply(
        self, request: RecordedRequest, message_id: str, state: str, details: dict[str, Any]
    ) -> Reply:
        status = {"pending": "sent", "delivered": "delivered"}.get(state, "delivery_failed")
        body, recipient = self._sent[message_id]
        return Reply(200, self._message(message_id, body, recipient, status, details))
