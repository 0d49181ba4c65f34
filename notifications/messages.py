"""What an alert says, in NOTIFY_LANGUAGE: a short GSM-7 SMS and a fuller text for email and
Telegram, for one delivery or a digest of many.

The fuller text answers an on-call person's questions in order: which token of which portal,
who is responsible, what failed (Bitrix's code and words), since when, what to do, and where
to click. Bitrix's own description is quoted as it came (English); everything around it is
translated.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.urls import reverse
from django.utils import timezone
from django.utils.timesince import timesince
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, ngettext, override

from notifications.backends import Message, gsm7_safe
from notifications.models import Channel, Delivery, Incident

SMS_MAX = 160  # one GSM-7 part; a longer alert first loses its link, then its tail
DIGEST_LINES = 30  # per section: Telegram takes 4096 characters, people read fewer

_REAUTH = gettext_lazy(
    "Re-connect the portal: in b24keeper choose “Add task”, open the authorize URL and "
    "submit the new code at once."
)
# What a person should do next, by Bitrix's error code (lower case).
ADVICE = {
    "invalid_grant": _REAUTH,
    "expired_token": _REAUTH,
    "wrong_client": gettext_lazy(
        "Check the client_id on the application's card in Bitrix24, then re-connect."
    ),
    "invalid_client": gettext_lazy(
        "Check the client secret on the application's card (or install the app again), "
        "then re-connect."
    ),
    "not_installed": gettext_lazy("Install the application on the portal again, then re-connect."),
    "payment_required": gettext_lazy(
        "Renew the application's subscription in Bitrix24, then enable the token again."
    ),
    "user_access_error": gettext_lazy("Re-connect as a user who may use the application."),
}
_ACT_NOW = gettext_lazy(
    "A person must act: open the token page, read the error and re-connect the portal."
)
_WAIT = gettext_lazy(
    "Nothing yet: b24keeper keeps retrying. If this lasts, check that the portal and "
    "Bitrix24 answer."
)


@dataclass(frozen=True)
class _Token:
    """The facts an alert about a token incident shows."""

    portal: str
    reference: str
    owner: str
    owner_contact: str
    link: str


def _admin_url(name: str, *args: object, query: str = "") -> str:
    return f"{settings.SITE_URL}{reverse(name, args=args)}{query}"


def incidents_link() -> str:
    return _admin_url("admin:notifications_incident_changelist", query="?state=open")


def _when(moment: datetime | None) -> str:
    return timezone.localtime(moment).strftime("%Y-%m-%d %H:%M %Z") if moment else "—"


def _token(incident: Incident) -> _Token:
    token = incident.token
    owner = token.owner
    name = (owner.get_full_name() or owner.get_username()) if owner else ""
    return _Token(
        portal=token.portal.domain,
        reference=token.reference,
        owner=name or _("nobody (set an owner on the token page)"),
        owner_contact=f"{name} <{owner.email}>" if owner and owner.email else name,
        link=_admin_url("admin:portals_token_change", token.pk),
    )


def _advice(incident: Incident) -> str:
    if incident.kind == Incident.Kind.OUTAGE:
        return _(
            "Nothing to do on the portals: b24keeper keeps retrying. If it lasts, check "
            "Bitrix24's status."
        )
    fallback = _ACT_NOW if incident.permanent else _WAIT
    return str(ADVICE.get(incident.error_code.lower(), fallback))


def _sms(text: str, link: str) -> str:
    """One SMS part if at all possible: drop the link before cutting the words."""
    for candidate in (f"{text} {link}", text):
        safe = gsm7_safe(candidate)
        if len(safe) <= SMS_MAX:
            return safe
    return safe[: SMS_MAX - 3] + "..."


def single(delivery: Delivery) -> Message:
    """The message for one delivery: an alert, a reminder or a recovery notice."""
    with override(settings.NOTIFY_LANGUAGE):
        incident = delivery.incident
        if incident.kind == Incident.Kind.OUTAGE:
            return _outage(incident, delivery.event)
        return _token_message(incident, delivery.event)


def _token_message(incident: Incident, event: str) -> Message:
    t = _token(incident)
    names = {"reference": t.reference, "portal": t.portal, "owner": t.owner}
    since = incident.token.failing_since or incident.opened_at
    if event == Delivery.Event.RESOLVED:
        subject = _("Resolved: Bitrix24 token “%(reference)s” of %(portal)s refreshes again")
        lines = [
            _("The Bitrix24 token “%(reference)s” of %(portal)s refreshes again. Nothing to do.")
            % names,
            _("It failed from %(start)s to %(end)s.")
            % {"start": _when(since), "end": _when(incident.resolved_at)},
        ]
        sms = _("b24keeper: token %(reference)s (%(portal)s) refreshes again.") % names
    else:
        if event == Delivery.Event.REMINDER:
            subject = _("Reminder: Bitrix24 token “%(reference)s” of %(portal)s still fails")
            head = _(
                "The Bitrix24 token “%(reference)s” of %(portal)s still cannot be refreshed, "
                "for %(duration)s now."
            )
            sms = _("b24keeper reminder: token %(reference)s (%(portal)s) still fails: %(code)s.")
        else:
            subject = _("Bitrix24 token “%(reference)s” of %(portal)s cannot be refreshed")
            head = _("b24keeper cannot refresh the Bitrix24 token “%(reference)s” of %(portal)s.")
            sms = _(
                "b24keeper: token %(reference)s (%(portal)s) cannot be refreshed: %(code)s. "
                "Owner: %(owner)s."
            )
        names |= {"code": incident.error_code or "?", "duration": timesince(since)}
        lines = [head % names, *_failure_lines(incident, since)]
        lines.append(_("What to do: %s") % _advice(incident))
        sms %= names
    lines = [lines[0], "", _("Responsible: %s") % (t.owner_contact or t.owner), *lines[1:]]
    lines += [_("Token page: %s") % t.link]
    return Message(subject=subject % names, text=_body(lines), sms_text=_sms(sms, t.link))


def _failure_lines(incident: Incident, since: datetime) -> list[str]:
    count = incident.occurrences
    return [
        _("What failed: %(code)s — %(description)s")
        % {"code": incident.error_code or "?", "description": incident.message},
        ngettext(
            "Failing since: %(since)s (%(count)d failed attempt)",
            "Failing since: %(since)s (%(count)d failed attempts)",
            count,
        )
        % {"since": _when(since), "count": count},
    ]


def _outage(incident: Incident, event: str) -> Message:
    link = incidents_link()
    count = {"count": incident.affected_tokens}
    if event == Delivery.Event.RESOLVED:
        subject = _("Resolved: the Bitrix24 authorization server answers again")
        period = {"start": _when(incident.opened_at), "end": _when(incident.resolved_at)}
        lines = [
            _("The Bitrix24 authorization server answers again; tokens refresh. Nothing to do."),
            _("The outage lasted from %(start)s to %(end)s.") % period,
        ]
        sms = _("b24keeper: the Bitrix24 authorization server outage is over.")
    else:
        subject = _("Bitrix24 authorization server outage: %(count)d tokens fail") % count
        lines = [
            _(
                "Many Bitrix24 tokens fail to refresh at once: the authorization server itself "
                "looks unavailable."
            ),
            _("Affected tokens: %(count)d") % count,
            *_failure_lines(incident, incident.opened_at),
            _("What to do: %s") % _advice(incident),
        ]
        sms = _("b24keeper: Bitrix24 authorization server outage, %(count)d tokens fail.") % count
    lines = [lines[0], "", *lines[1:], _("Open incidents: %s") % link]
    return Message(subject=subject, text=_body(lines), sms_text=_sms(sms, link))


def _body(lines: list[str]) -> str:
    return "\n".join([*lines, "", "— b24keeper"])


def digest(deliveries: Sequence[Delivery]) -> Message:
    """One message for many deliveries of one channel: a storm, or a backlog after a limit."""
    with override(settings.NOTIFY_LANGUAGE):
        sections = {
            event: [d.incident for d in deliveries if d.event == event]
            for event in (Delivery.Event.OPENED, Delivery.Event.REMINDER, Delivery.Event.RESOLVED)
        }
        summary = _summary({event: len(items) for event, items in sections.items()})
        titles = {
            Delivery.Event.OPENED: _("New failures (%d):"),
            Delivery.Event.REMINDER: _("Still failing (%d):"),
            Delivery.Event.RESOLVED: _("Recovered (%d):"),
        }
        lines = [_("Many alerts at once, so they come in one message: %s.") % summary]
        for event, incidents in sections.items():
            if incidents:
                lines += ["", titles[event] % len(incidents), *_digest_lines(incidents)]
        link = incidents_link()
        lines += ["", _("Open incidents: %s") % link]
        sms = _("b24keeper: %s.") % summary
        return Message(subject=sms, text=_body(lines), sms_text=_sms(sms, link))


def _summary(counts: dict[str, int]) -> str:
    parts = []
    if counts[Delivery.Event.OPENED]:
        n = counts[Delivery.Event.OPENED]
        parts.append(ngettext("%d new failure", "%d new failures", n) % n)
    if counts[Delivery.Event.REMINDER]:
        n = counts[Delivery.Event.REMINDER]
        parts.append(ngettext("%d still failing", "%d still failing", n) % n)
    if counts[Delivery.Event.RESOLVED]:
        n = counts[Delivery.Event.RESOLVED]
        parts.append(ngettext("%d recovered", "%d recovered", n) % n)
    return ", ".join(parts)


def _digest_lines(incidents: list[Incident]) -> list[str]:
    lines = []
    for incident in incidents[:DIGEST_LINES]:
        if incident.kind == Incident.Kind.OUTAGE:
            what = _("authorization server outage, %d tokens") % incident.affected_tokens
            lines.append(f"- {what} — {incident.error_code or '?'}")
            continue
        t = _token(incident)
        lines.append(
            f"- {t.portal} / {t.reference} — {incident.error_code or '?'} — "
            + _("owner: %s") % t.owner
        )
    if len(incidents) > DIGEST_LINES:
        lines.append(_("…and %d more.") % (len(incidents) - DIGEST_LINES))
    return lines


def test_message(channel: Channel) -> Message:
    with override(settings.NOTIFY_LANGUAGE):
        names = {"name": channel.name}
        return Message(
            subject=_("b24keeper test message"),
            text=_(
                "This is a test message from b24keeper for the channel “%(name)s”. Alerts "
                "about Bitrix24 tokens will arrive here like this one."
            )
            % names,
            sms_text=gsm7_safe(_("b24keeper test message for %(name)s.") % names),
        )
