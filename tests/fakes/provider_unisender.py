"""A wire-level fake of the UniSender (Selzy) classic API (docs/notification-providers.md §3
and §5a): sendSms and sendEmail, and checkSms and checkEmail for the delivery status. Like the
real API it reports errors in the body of an HTTP 200.

With `email_interval` (seconds) it also keeps UniSender's rule for sendEmail: a second email
to one address within that time is refused for that recipient. UniSender documents the rule
but not the code it answers with; the fake's `too_frequent` is ours, and deliberately one
b24keeper's table does not know. Sending that fast is a client bug, so it is also a violation.
"""

from __future__ import annotations

import random
import re
import threading
import time
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
_CHECK_FIELDS = {"checkSms": {"api_key", "sms_id"}, "checkEmail": {"api_key", "email_id"}}
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
        # A per-recipient error code UniSender does not document (see the module docstring).
        "unknown_recipient_error": "Sending to this address is not possible right now",
    }

    def __init__(
        self, api_key: str = API_KEY, *, email_interval: float = 0.0, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.api_key = api_key
        self.email_interval = email_interval
        self.email_times: dict[str, list[float]] = {}  # address -> when sendEmail took one
        self._times_lock = threading.Lock()

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
        if method in _CHECK_FIELDS:
            unexpected = set(request.body) ^ _CHECK_FIELDS[method]
            return problems + [f"unexpected field {name!r}" for name in unexpected]
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
            sms_id = self.register(str(random.randrange(10**12, 10**13)))
            return Reply(200, {"result": {"currency": "RUB", "price": 3.5, "sms_id": sms_id}})
        address = request.body["email"]
        if self._too_soon(address):
            self.violations.append(f"two emails to {address} within {self.email_interval:g} s")
            return self._recipient_error(request, "too_frequent", "Too frequent sending")
        email_id = self.register(str(random.randrange(10**10, 10**11)))
        return Reply(200, {"result": [{"index": 0, "email": address, "id": email_id}]})

    def _too_soon(self, address: str) -> bool:
        """Record an email to `address`; True when the one before was too recent."""
        now = time.monotonic()
        with self._times_lock:
            times = self.email_times.setdefault(address.lower(), [])
            too_soon = bool(times) and now - times[-1] < self.email_interval
            if not too_soon:
                times.append(now)
        return too_soon

    @staticmethod
    def _recipient_error(request: RecordedRequest, code: str, message: str) -> Reply:
        errors = [{"code": code, "message": message}]
        result = [{"index": 0, "email": request.body["email"], "errors": errors}]
        return Reply(200, {"result": result})

    def bad_request(self, request: RecordedRequest, problems: list[str]) -> Reply:
        return unisender_error("; ".join(problems), "invalid_arg")

    def error_reply(self, kind: str, request: RecordedRequest, options: dict[str, Any]) -> Reply:
        if kind in ("unchecked_sender_email", "unknown_recipient_error"):
            code = "too_frequent" if kind == "unknown_recipient_error" else kind
            return self._recipient_error(request, code, self.errors[kind])
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

    # --- checkSms, checkEmail -------------------------------------------------------------
    def is_status_request(self, request: RecordedRequest) -> bool:
        match = _PATH_RE.fullmatch(request.path)
        return bool(match) and match.group(2) in _CHECK_FIELDS

    def status_problems(self, request: RecordedRequest) -> list[str]:
        return self.problems(request)

    def status_message_id(self, request: RecordedRequest) -> str:
        return str(request.body.get("sms_id") or request.body.get("email_id") or "")

    def unknown_message(self, request: RecordedRequest, message_id: str) -> Reply:
        # Not documented; what the classic API says to an argument it cannot use.
        return unisender_error(f"Invalid argument: no message {message_id}", "invalid_arg")

    def status_reply(
        self, request: RecordedRequest, message_id: str, state: str, details: dict[str, Any]
    ) -> Reply:
        default = "err_delivery_failed" if state == "undelivered" else ""
        status = {"pending": "ok_sent", "delivered": "ok_delivered"}.get(state, default)
        status = details.get("status", status) if state == "undelivered" else status
        if request.path.endswith("/checkSms"):
            return Reply(200, {"result": {"status": status}})
        # One id asked: the single `status` sits next to `statuses`, for old clients.
        statuses = [{"id": int(message_id), "status": status}]
        return Reply(200, {"result": {"statuses": statuses, "status": status}})
