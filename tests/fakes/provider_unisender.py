"""A wire-level fake of the UniSender (Selzy) classic API: sendSms and sendEmail (providers
reference §3 and §5a). Like the real API it reports errors in the body of an HTTP 200."""

from __future__ import annotations

import random
import re
from typing import Any

from .providers import FakeProviderServer, RecordedRequest, Reply, is_gsm7

API_KEY = "us-FAKEapikey0000000000000000000"
SMS_SENDER = "AcmeOps"
SENDER_EMAIL = "alerts@example.com"
SENDER_NAME = "Acme Alerts"
LIST_ID = "4242"

_PATH_RE = re.compile(r"/(en|ru|it|ua)/api/(\w+)")
_PHONE_RE = re.compile(r"\+?[1-9]\d{6,14}")
_SMS_FIELDS = {"api_key", "phone", "sender", "text"}
_EMAIL_REQUIRED = {"api_key", "email", "sender_name", "sender_email", "subject", "body", "list_id"}
_EMAIL_OPTIONAL = {"error_checking", "track_read", "track_links", "lang", "cc", "wrap_type"}


def unisender_error(message: str, code: str, status: int = 200) -> Reply:
    return Reply(status, {"error": message, "code": code})


class FakeUniSender(FakeProviderServer):
    name = "unisender"
    # Whole-call errors: kind (= UniSender's code) -> its HTML-escaped text, as UniSender sends.
    errors = {
        "invalid_api_key": "Invalid API key",
        "access_denied": "Access denied",
        "unknown_method": "Unknown method",
        "invalid_arg": "Invalid argument &quot;sender&quot;: the name is not registered",
        "not_enough_money": "Not enough money on the account",
        "unspecified": "Unspecified error",
        "retry_later": "Temporary failure, retry later",
        "api_call_limit_exceeded_for_api_key": "API call limit exceeded for API key",
        "api_call_limit_exceeded_for_ip": "API call limit exceeded for IP",
        "dest_invalid": "Delivery to this number is impossible",
        "src_invalid": "Invalid sender name",
        "has_been_sent": "SMS to this number was sent less than a minute ago",
        "unsubscribed_globally": "The recipient has unsubscribed globally",
        # sendEmail answers, inside HTTP 200, each a result rather than an error object:
        "unchecked_sender_email": "Sender address is not confirmed",
        "legacy_email_id": "",  # success without error_checking: {"result": {"email_id": ...}}
        "with_warning": "",  # success with a warnings list
    }

    def __init__(self, api_key: str = API_KEY, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.api_key = api_key

    def problems(self, request: RecordedRequest) -> list[str]:
        problems = []
        match = _PATH_RE.fullmatch(request.path)
        if request.method != "POST" or not match:
            problems.append(
                f"expected POST /<lang>/api/<method>, got {request.method} {request.path}"
            )
        if request.query != {"format": "json"}:
            problems.append(f"expected exactly ?format=json in the query, got {request.query}")
        if request.content_type != "application/x-www-form-urlencoded":
            return [*problems, f"expected a form body, got {request.content_type or 'none'}"]
        method = match.group(2) if match else ""
        if method == "sendSms":
            return problems + self._sms_problems(request.body)
        if method == "sendEmail":
            return problems + self._email_problems(request.body)
        return [*problems, f"unexpected method {method!r}"]

    @staticmethod
    def _sms_problems(form: dict[str, str]) -> list[str]:
        problems = [f"unexpected field {name!r}" for name in set(form) ^ _SMS_FIELDS]
        if not _PHONE_RE.fullmatch(form.get("phone", "")):
            problems.append(f"expected one international number, got {form.get('phone')!r}")
        if not 3 <= len(form.get("sender", "")) <= 11:
            problems.append(f"sender must be 3-11 characters, got {form.get('sender')!r}")
        if not is_gsm7(form.get("text", "")) or not form.get("text"):
            problems.append(f"text is missing or not GSM-7: {form.get('text')!r}")
        return problems

    @staticmethod
    def _email_problems(form: dict[str, str]) -> list[str]:
        problems = [f"missing field {name!r}" for name in _EMAIL_REQUIRED - set(form)]
        unknown = set(form) - _EMAIL_REQUIRED - _EMAIL_OPTIONAL
        problems += [f"unexpected field {name!r}" for name in unknown]
        if form.get("error_checking") != "1":
            problems.append("expected error_checking=1")
        if "," in form.get("email", ""):
            problems.append("expected one recipient per call")
        return problems

    def authenticate(self, request: RecordedRequest) -> Reply | None:
        if request.body.get("api_key") != self.api_key:
            return unisender_error("Invalid API key", "invalid_api_key")
        return None

    def success(self, request: RecordedRequest) -> Reply:
        if request.path.endswith("/sendSms"):
            sms_id = str(random.randrange(10**12, 10**13))
            return Reply(200, {"result": {"currency": "RUB", "price": 3.5, "sms_id": sms_id}})
        email_id = str(random.randrange(10**10, 10**11))
        return Reply(
            200, {"result": [{"index": 0, "email": request.body["email"], "id": email_id}]}
        )

    def bad_request(self, request: RecordedRequest, problems: list[str]) -> Reply:
        return unisender_error("; ".join(problems), "invalid_arg")

    def error_reply(self, kind: str, request: RecordedRequest, options: dict[str, Any]) -> Reply:
        if kind == "unchecked_sender_email":
            errors = [{"code": kind, "message": self.errors[kind]}]
            result = [{"index": 0, "email": request.body["email"], "errors": errors}]
            return Reply(200, {"result": result})
        if kind == "legacy_email_id":
            return Reply(200, {"result": {"email_id": "95381246377"}})
        if kind == "with_warning":
            reply = self.success(request)
            warning = {
                "index": 0,
                "email": request.body.get("email"),
                "warning": "slow &amp; steady",
            }
            return Reply(200, {**reply.body, "warnings": [warning]})
        return unisender_error(self.errors[kind], kind)

    def rate_limit_body(self, request: RecordedRequest) -> Any:
        return unisender_error(
            self.errors["api_call_limit_exceeded_for_api_key"],
            "api_call_limit_exceeded_for_api_key",
        ).body
