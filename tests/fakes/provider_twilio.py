"""A wire-level fake of Twilio's Messages API (docs/notification-providers.md §1): sending,
and reading a message back (GET …/Messages/<sid>.json) for its delivery status."""

from __future__ import annotations

import re
import uuid
from typing import Any

from .providers import (
    FakeProviderServer,
    RecordedRequest,
    Reply,
    basic_auth,
    is_gsm7,
    sms_segments,
)

ACCOUNT_SID = "AC0123456789abcdef0123456789abcdef"
AUTH_TOKEN = "tw-auth-token-FAKE-0000000000000000"
SENDER = "+15550100999"
MESSAGING_SERVICE_SID = "MG0123456789abcdef0123456789abcdef"

_PATH_RE = re.compile(r"/2010-04-01/Accounts/([^/]+)/Messages\.json")
_MESSAGE_RE = re.compile(r"/2010-04-01/Accounts/([^/]+)/Messages/([^/]+)\.json")
_E164_RE = re.compile(r"\+[1-9]\d{6,14}")
_FIELDS = {
    "To",
    "From",
    "MessagingServiceSid",
    "Body",
    "StatusCallback",
    "ValidityPeriod",
    "SmartEncoded",
    "RiskCheck",
}


def twilio_error(status: int, code: int, message: str) -> Reply:
    return Reply(
        status,
        {
            "code": code,
            "message": message,
            "more_info": f"https://www.twilio.com/docs/errors/{code}",
            "status": status,
        },
    )


class FakeTwilio(FakeProviderServer):
    name = "twilio"
    # kind -> (HTTP status, Twilio error code, message)
    errors = {
        "invalid_to": (400, 21211, "The 'To' number {To} is not a valid phone number."),
        "not_mobile": (400, 21614, "'To' number {To} is not a valid mobile number"),
        "sender_not_capable": (
            400,
            21606,
            "The 'From' phone number provided is not a valid message-capable Twilio phone "
            "number for this destination.",
        ),
        "trial_unverified": (
            400,
            21608,
            "The number {To} is unverified. Trial accounts cannot send messages to "
            "unverified numbers.",
        ),
        "unsubscribed": (400, 21610, "Attempt to send to unsubscribed recipient"),
        "region_disabled": (400, 21612, "The 'To' phone number is not currently reachable."),
        "permission_not_enabled": (
            400,
            21408,
            "Permission to send an SMS has not been enabled for the region indicated by the "
            "'To' number: {To}.",
        ),
        "body_too_long": (
            400,
            21617,
            "The concatenated message body exceeds the 1600 character limit.",
        ),
        "authenticate": (401, 20003, "Authenticate"),
        "not_found": (404, 20404, "The requested resource was not found"),
        "too_many_requests": (429, 20429, "Too Many Requests"),
    }

    def __init__(
        self, account_sid: str = ACCOUNT_SID, auth_token: str = AUTH_TOKEN, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.account_sid = account_sid
        self.auth_token = auth_token

    def problems(self, request: RecordedRequest) -> list[str]:
        problems = []
        if request.method != "POST" or not _PATH_RE.fullmatch(request.path):
            problems.append(
                f"expected POST /2010-04-01/Accounts/<sid>/Messages.json, got "
                f"{request.method} {request.path}"
            )
        scheme = (request.header("Authorization") or "").split(" ")[0]
        if scheme != "Basic":
            problems.append(f"expected HTTP Basic auth, got {scheme or 'none'}")
        if request.content_type != "application/x-www-form-urlencoded":
            problems.append(f"expected a form body, got {request.content_type or 'none'}")
            return problems
        if "application/json" not in (request.header("Accept") or ""):
            problems.append("expected Accept: application/json")
        return problems + self._field_problems(request.body)

    @staticmethod
    def _field_problems(form: dict[str, str]) -> list[str]:
        problems = [f"unknown field {name!r}" for name in form if name not in _FIELDS]
        if not _E164_RE.fullmatch(form.get("To", "")):
            problems.append(f"To must be E.164, got {form.get('To')!r}")
        if ("From" in form) == ("MessagingServiceSid" in form):
            problems.append("send exactly one of From and MessagingServiceSid")
        if not form.get("Body"):
            problems.append("Body is missing")
        elif not is_gsm7(form["Body"]):
            problems.append(f"Body is not GSM-7, so the SMS would go as UCS-2: {form['Body']!r}")
        return problems

    def authenticate(self, request: RecordedRequest) -> Reply | None:
        match = _PATH_RE.fullmatch(request.path) or _MESSAGE_RE.fullmatch(request.path)
        if match and match.group(1) != self.account_sid:
            return twilio_error(404, 20404, f"The requested resource {request.path} was not found")
        if basic_auth(request) != (self.account_sid, self.auth_token):
            return twilio_error(401, 20003, "Authenticate")
        return None

    def success(self, request: RecordedRequest) -> Reply:
        form = request.body
        service = form.get("MessagingServiceSid")
        segments = str(sms_segments(form["Body"]))
        return Reply(
            201,
            {
                "sid": self.register("SM" + uuid.uuid4().hex),
                "status": "accepted" if service else "queued",
                "to": form["To"],
                "from": form.get("From"),
                "body": form["Body"],
                "num_segments": "0" if service else segments,  # strings, as Twilio sends them
                "num_media": "0",
                "error_code": None,
                "error_message": None,
                "price": None,
                "date_created": "Tue, 03 Mar 2026 10:00:00 +0000",
                "direction": "outbound-api",
                "api_version": "2010-04-01",
                "account_sid": self.account_sid,
                "messaging_service_sid": service,
                "uri": request.path,
            },
        )

    def bad_request(self, request: RecordedRequest, problems: list[str]) -> Reply:
        return twilio_error(400, 21604, "A 'To' phone number is required.")

    def error_reply(self, kind: str, request: RecordedRequest, options: dict[str, Any]) -> Reply:
        status, code, message = self.errors[kind]
        return twilio_error(status, code, message.format(**request.body))

    def rate_limit_body(self, request: RecordedRequest) -> Any:
        return twilio_error(429, 20429, "Too Many Requests").body

    # --- GET …/Messages/<sid>.json --------------------------------------------------------
    def is_status_request(self, request: RecordedRequest) -> bool:
        return bool(_MESSAGE_RE.fullmatch(request.path))

    def status_problems(self, request: RecordedRequest) -> list[str]:
        problems = []
        if request.method != "GET":
            problems.append(f"expected GET {request.path}, got {request.method}")
        if (request.header("Authorization") or "").split(" ")[0] != "Basic":
            problems.append("expected HTTP Basic auth")
        if "application/json" not in (request.header("Accept") or ""):
            problems.append("expected Accept: application/json")
        return problems

    def status_message_id(self, request: RecordedRequest) -> str:
        return _MESSAGE_RE.fullmatch(request.path).group(2)

    def unknown_message(self, request: RecordedRequest, message_id: str) -> Reply:
        return twilio_error(404, 20404, f"The requested resource {request.path} was not found")

    def status_reply(
        self, request: RecordedRequest, message_id: str, state: str, details: dict[str, Any]
    ) -> Reply:
        # "sent": the carrier has it and has not answered (some never do).
        status = {"pending": "sent", "delivered": "delivered"}.get(state, "undelivered")
        failed = state == "undelivered"
        return Reply(
            200,
            {
                "sid": message_id,
                "status": details.get("status", status) if failed else status,
                "error_code": details.get("code", 30003) if failed else None,  # an integer
                "error_message": details.get("message") if failed else None,  # often null
                "account_sid": self.account_sid,
                "direction": "outbound-api",
                "api_version": "2010-04-01",
                "uri": request.path,
            },
        )
