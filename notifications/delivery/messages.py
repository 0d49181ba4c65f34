"""What an alert says, in the channel's language (its `language`, NOTIFY_LANGUAGE by default): a
short GSM-7 SMS and a fuller text for email and
Telegram, for one delivery (digests.py builds a digest of many).

The fuller text answers an on-call person's questions in order: which token of which portal,
who is responsible, what failed (Bitrix's code and words), since when, what to do, and where
to click. Bitrix's own description is quoted as it came (labelled as Bitrix24's words) but
shortened, so the advice and the link always fit; everything around it is translated, and the
advice is said once (portals.bitrix.errors.explain takes it out of the stored message).

Length limits: an alert's SMS is one GSM-7 part (160 septets; an extension character such as
`[` or `€` takes two), dropping the link before cutting words; the fuller text fits Telegram's
4096 characters (the smallest limit of the full-text channels).
"""

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from django.conf import settings
from django.urls import reverse
from django.utils import timezone
from django.utils.timesince import timesince
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, ngettext, override

from notifications.backends import BACKENDS, Message, gsm7_safe
from notifications.backends.gsm7 import SINGLE_PART, fit_septets, is_clean, septets
from notifications.models import Channel, Delivery, Incident
from portals.bitrix.errors import ConfigurationError, Explained, advice_for, explain

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractUser

    from portals.models import Token

SMS_MAX = SINGLE_PART  # septets: one GSM-7 part
TEXT_MAX = 4096  # characters: Telegram's limit, the smallest of the full-text channels
DESCRIPTION_MAX = 600  # characters of Bitrix's description quoted in an alert
SHORTENED = " […]"

_ACT_NOW = gettext_lazy(
    "A person must act: open the token page, read the error and re-connect the portal."
)
_FIX_SETTING = gettext_lazy(
    "A setting of b24keeper must be fixed (the error names it); the token recovers by itself "
    "once it is."
)
_WAIT = gettext_lazy(
    "Nothing yet: b24keeper keeps retrying. If this lasts, check that the portal and "
    "Bitrix24 answer."
)


def _advice(incident: Incident) -> str:
    if incident.kind == Incident.Kind.OUTAGE:
        return _(
            "Nothing to do on the portals: b24keeper keeps retrying. If it lasts, check "
            "Bitrix24's status."
        )
    if not incident.permanent:
        return str(_WAIT)
    if incident.error_code == ConfigurationError.code:
        return str(_FIX_SETTING)
    # What to do about a Bitrix error lives in the one table of Bitrix errors.
    return str(advice_for(incident.error_code) or _ACT_NOW)


def advice(incident: Incident) -> str:
    """What a person should do next about `incident`."""
    if incident.kind == Incident.Kind.CHANNEL:
        return _(
            "Fix the cause named above in the channel's settings or at the provider, then "
            "enable the channel again. Until then alerts do not reach it; this channel still "
            "gets them."
        )
    return _advice(incident)


@dataclass(frozen=True)
class _Token:
    """The facts an alert about a token incident shows."""

    portal: str
    reference: str
    owner: str
    owner_sms: str  # the owner's name as an SMS can show it
    owner_contact: str
    link: str


def _admin_url(name: str, *args: object, query: str = "") -> str:
    return f"{settings.SITE_URL}{reverse(name, args=args)}{query}"


def incidents_link() -> str:
    return _admin_url("admin:notifications_incident_changelist", query="?state=open")


def channel_link(channel_id: int | None) -> str:
    if channel_id is None:
        return incidents_link()
    return _admin_url("admin:notifications_channel_change", channel_id)


def _when(moment: datetime | None) -> str:
    return timezone.localtime(moment).strftime("%Y-%m-%d %H:%M %Z") if moment else "—"


def _token_of(incident: Incident) -> "Token":
    if incident.token is None:
        raise ValueError(f"incident {incident.pk} is not about a token")
    return incident.token


def token_facts(incident: Incident) -> _Token:
    token = _token_of(incident)
    owner = token.owner
    name = (owner.get_full_name() or owner.get_username()) if owner else ""
    return _Token(
        portal=token.portal.domain,
        reference=token.reference,
        owner=name or _("nobody (set an owner on the token page)"),
        owner_sms=_sms_name(owner) if owner else _("nobody"),
        owner_contact=f"{name} <{owner.email}>" if owner and owner.email else name,
        link=_admin_url("admin:portals_token_change", token.pk),
    )


def _sms_name(owner: "AbstractUser") -> str:
    """A name an SMS can show: the full name where GSM-7 can spell it (transliterated), else
    the login or the email's local part; never a row of "?" for a script it cannot spell."""
    candidates = [
        owner.get_full_name(),
        owner.get_username(),
        (owner.email or "").split("@")[0],
    ]
    clean = [name for name in candidates if name and is_clean(name)]
    return clean[0] if clean else _("see the token page")


def shorten(text: str, limit: int) -> str:
    """Bitrix's description, cut at a word to at most `limit` characters, marked as cut."""
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    cut = text[: max(limit - len(SHORTENED), 0)]
    return (cut.rsplit(" ", 1)[0] if " " in cut else cut) + SHORTENED


def sms(text: str, link: str = "", limit: int = SMS_MAX) -> str:
    """GSM-7 text within `limit` septets: drop the link before cutting the words."""
    for candidate in (f"{text} {link}" if link else text, text):
        safe = gsm7_safe(candidate)
        if septets(safe) <= limit:
            return safe
    return fit_septets(safe, limit)


# An outage's message ends with the last token error, after this mark (escalation.py).
LAST_ERROR_MARK = "Last error: "


def language_of(channel: Channel | None) -> str:
    """The language a channel's messages are written in."""
    return (channel.language if channel else "") or settings.NOTIFY_LANGUAGE


def language_for(delivery: Delivery | None) -> str:
    """The language of the channel a delivery goes to, read alone: loading the whole channel
    would decrypt its credentials, which the sending code handles apart."""
    if delivery is None or delivery.channel_id is None:
        return settings.NOTIFY_LANGUAGE
    found = Channel.objects.filter(pk=delivery.channel_id).values_list("language", flat=True)
    return found.first() or settings.NOTIFY_LANGUAGE


def explained(incident: Incident) -> Explained:
    """A token or outage incident's error as a person reads it, in the active language
    (a channel incident's message is the provider's refusal, kept)."""
    if incident.kind == Incident.Kind.CHANNEL:
        return Explained(incident.message, "", "")
    stored = incident.message
    if incident.kind == Incident.Kind.OUTAGE and LAST_ERROR_MARK in stored:
        stored = stored.split(LAST_ERROR_MARK, 1)[1]
    return explain(incident.error_code, stored)


def single(delivery: Delivery) -> Message:
    """The message for one delivery: an alert, a reminder or a recovery notice."""
    with override(language_for(delivery)):
        incident = delivery.incident
        if incident.kind == Incident.Kind.OUTAGE:
            return _outage(incident, delivery.event)
        if incident.kind == Incident.Kind.CHANNEL:
            return _channel_off(incident)
        return _token_message(incident, delivery.event)


def _token_message(incident: Incident, event: str) -> Message:
    t = token_facts(incident)
    names = {"reference": t.reference, "portal": t.portal, "owner": t.owner_sms}
    since = _token_of(incident).failing_since or incident.opened_at
    names |= {"code": incident.error_code or "?", "duration": timesince(since)}
    if event == Delivery.Event.RESOLVED:
        subject, lines, short = _resolved(incident, since)
    else:
        subject, head, short = _TOKEN_TEXTS[event]()
        lines = [head % names, *_failure_lines(incident, since)]
        lines.append(_("What to do: %s") % advice(incident))
    lines = [lines[0], "", _("Responsible: %s") % (t.owner_contact or t.owner), *lines[1:]]
    lines += [_("Token page: %s") % t.link]
    text = _fit(_body(lines), _words(incident))
    return Message(subject=subject % names, text=text, sms_text=sms(short % names, t.link))


def _opened() -> tuple[str, str, str]:
    return (
        _("Bitrix24 token “%(reference)s” of %(portal)s cannot be refreshed"),
        _("b24keeper cannot refresh the Bitrix24 token “%(reference)s” of %(portal)s."),
        _(
            "b24keeper: token %(reference)s (%(portal)s) cannot be refreshed: %(code)s. "
            "Owner: %(owner)s."
        ),
    )


def _changed() -> tuple[str, str, str]:
    return (
        _("Act now: Bitrix24 token “%(reference)s” of %(portal)s needs a person"),
        _(
            "The failure of the Bitrix24 token “%(reference)s” of %(portal)s changed: "
            "b24keeper cannot fix it by retrying, a person must act now."
        ),
        _(
            "b24keeper: token %(reference)s (%(portal)s) now needs a person: %(code)s. "
            "Owner: %(owner)s."
        ),
    )


def _reminder() -> tuple[str, str, str]:
    return (
        _("Reminder: Bitrix24 token “%(reference)s” of %(portal)s still fails"),
        _(
            "The Bitrix24 token “%(reference)s” of %(portal)s still cannot be refreshed, "
            "for %(duration)s now."
        ),
        _("b24keeper reminder: token %(reference)s (%(portal)s) still fails: %(code)s."),
    )


_TOKEN_TEXTS: dict[str, Callable[[], tuple[str, str, str]]] = {
    Delivery.Event.OPENED: _opened,
    Delivery.Event.CHANGED: _changed,
    Delivery.Event.REMINDER: _reminder,
}


def _resolved(incident: Incident, since: datetime) -> tuple[str, list[str], str]:
    token = _token_of(incident)
    names = {"reference": token.reference, "portal": token.portal.domain}
    lines = [
        _("The Bitrix24 token “%(reference)s” of %(portal)s refreshes again. Nothing to do.")
        % names,
        _("It failed from %(start)s to %(end)s.")
        % {"start": _when(since), "end": _when(incident.resolved_at)},
    ]
    return (
        _("Resolved: Bitrix24 token “%(reference)s” of %(portal)s refreshes again"),
        lines,
        _("b24keeper: token %(reference)s (%(portal)s) refreshes again."),
    )


def _words(incident: Incident) -> str:
    """What goes where "{description}" stands: Bitrix24's own words, else what happened."""
    found = explained(incident)
    return found.quote or found.said


def _failure_lines(incident: Incident, since: datetime) -> list[str]:
    count = incident.occurrences
    names = {"code": incident.error_code or "?", "description": "{description}"}
    if explained(incident).quote:
        what = _("What failed: %(code)s — Bitrix24's words: “%(description)s”") % names
    else:
        what = _("What failed: %(code)s — %(description)s") % names
    return [
        what,
        ngettext(
            "Failing since: %(since)s (%(count)d failed attempt)",
            "Failing since: %(since)s (%(count)d failed attempts)",
            count,
        )
        % {"since": _when(since), "count": count},
    ]


def _fit(text: str, description: str) -> str:
    """Put Bitrix's description into `text` where "{description}" stands, shortened so that
    the whole stays within TEXT_MAX: the description gives way, never the advice or link."""
    if "{description}" not in text:
        return text[:TEXT_MAX]
    room = TEXT_MAX - (len(text) - len("{description}"))
    return text.replace("{description}", shorten(description, min(DESCRIPTION_MAX, room)), 1)


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
        short = _("b24keeper: the Bitrix24 authorization server outage is over.")
    else:
        subject = (
            ngettext(
                "Bitrix24 authorization server outage: %(count)d token fails",
                "Bitrix24 authorization server outage: %(count)d tokens fail",
                incident.affected_tokens,
            )
            % count
        )
        lines = [
            _(
                "Many Bitrix24 tokens fail to refresh at once: the authorization server itself "
                "looks unavailable."
            ),
            _("Affected tokens: %(count)d") % count,
            *_failure_lines(incident, incident.opened_at),
            _("What to do: %s") % advice(incident),
        ]
        short = (
            ngettext(
                "b24keeper: Bitrix24 authorization server outage, %(count)d token fails.",
                "b24keeper: Bitrix24 authorization server outage, %(count)d tokens fail.",
                incident.affected_tokens,
            )
            % count
        )
    lines = [lines[0], "", *lines[1:], _("Open incidents: %s") % link]
    text = _fit(_body(lines), _words(incident))
    return Message(subject=subject, text=text, sms_text=sms(short, link))


def channel_names(incident: Incident) -> dict[str, str]:
    channel = incident.channel
    backend = BACKENDS.get(channel.kind) if channel else None
    return {
        "name": channel.name if channel else "?",
        "provider": backend.label if backend else "?",
        "destination": channel.destination if channel else "?",
    }


def _channel_off(incident: Incident) -> Message:
    """The one short notice every other channel gets when b24keeper switches a channel off."""
    names = channel_names(incident)
    link = channel_link(incident.channel_id)
    lines = [
        _(
            "b24keeper switched off the alert channel “%(name)s” (%(provider)s, "
            "%(destination)s): its provider refused a message for good."
        )
        % names,
        "",
        _("Why: %s") % "{description}",
        _("What to do: %s") % advice(incident),
        _("Channel page: %s") % link,
    ]
    short = _("b24keeper: alert channel %(name)s (%(provider)s) is off: %(reason)s") % {
        **names,
        "reason": incident.message,
    }
    return Message(
        subject=_("Alerts no longer reach “%(name)s” (%(provider)s)") % names,
        text=_fit(_body(lines), incident.message),
        sms_text=sms(short, link),
    )


def _body(lines: list[str]) -> str:
    return "\n".join([*lines, "", "— b24keeper"])


def test_message(channel: Channel) -> Message:
    with override(language_of(channel)):
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
