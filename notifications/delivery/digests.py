"""One message for many deliveries of one channel: a storm, or a backlog after a limit.

A digest must not hide what matters: every new incident a person must act on (a permanent
failure, a severity change, a channel switched off) is named with its portal, reference and
what to do, newest first; then the other new failures, what still fails and what recovered.
When the text would pass a provider's limit, the oldest and least urgent lines give way to a
count, never the newest failures: the fuller text fits Telegram's 4096 characters, the SMS
DIGEST_SMS_PARTS GSM-7 parts (far below Twilio's 1,600 and UniSender's 1,000 characters).
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from django.utils.translation import gettext as _
from django.utils.translation import ngettext, override

from notifications.backends import Message
from notifications.backends.gsm7 import PER_PART, septets
from notifications.delivery.messages import (
    TEXT_MAX,
    advice,
    channel_link,
    channel_names,
    incidents_link,
    language_for,
    shorten,
    sms,
    token_facts,
)
from notifications.models import Delivery, Incident

Event = Delivery.Event
DIGEST_SMS_PARTS = 3
REASON_MAX = 200  # characters of a switched-off channel's reason in a digest line


@dataclass(frozen=True)
class _Sections:
    act: list[Incident]  # new, and a person must act: named in full
    new: list[Incident]  # new, b24keeper keeps retrying
    still: list[Incident]
    recovered: list[Incident]


def _sections(deliveries: Sequence[Delivery]) -> _Sections:
    newest_first = sorted(deliveries, key=lambda d: (d.created_at, d.pk or 0), reverse=True)

    def pick(events: tuple[str, ...], act: bool | None = None) -> list[Incident]:
        chosen = [d.incident for d in newest_first if d.event in events]
        return chosen if act is None else [i for i in chosen if _needs_person(i) == act]

    first = (Event.OPENED, Event.CHANGED)
    return _Sections(
        act=pick(first, act=True),
        new=pick(first, act=False),
        still=pick((Event.REMINDER,)),
        recovered=pick((Event.RESOLVED,)),
    )


def _needs_person(incident: Incident) -> bool:
    return incident.permanent or incident.kind == Incident.Kind.CHANNEL


def digest(deliveries: Sequence[Delivery]) -> Message:
    with override(language_for(deliveries[0] if deliveries else None)):
        sections = _sections(deliveries)
        summary = _summary(sections)
        link = incidents_link()
        footer = ["", _("Open incidents: %s") % link, "", "— b24keeper"]
        head = [_("Many alerts at once, so they come in one message: %s.") % summary]
        text = _fill(head, _text_sections(sections), footer)
        return Message(
            subject=_("b24keeper: %s.") % summary,
            text=text,
            sms_text=_sms(sections, summary, link),
        )


def _summary(sections: _Sections) -> str:
    parts = []
    new = len(sections.act) + len(sections.new)
    if new:
        part = ngettext("%d new failure", "%d new failures", new) % new
        if sections.act:
            n = len(sections.act)
            part += " " + ngettext("(%d needs a person now)", "(%d need a person now)", n) % n
        parts.append(part)
    if sections.still:
        n = len(sections.still)
        parts.append(ngettext("%d still failing", "%d still failing", n) % n)
    if sections.recovered:
        n = len(sections.recovered)
        parts.append(ngettext("%d recovered", "%d recovered", n) % n)
    return ", ".join(parts)


# A section: its title, and a function giving the lines of one incident in it.
_Section = tuple[str, list[Incident], Callable[[Incident], list[str]]]


def _text_sections(sections: _Sections) -> list[_Section]:
    return [
        (_("Act now (%d), newest first:"), sections.act, _act_lines),
        (_("New failures (%d):"), sections.new, lambda i: [_line(i)]),
        (_("Still failing (%d):"), sections.still, lambda i: [_line(i)]),
        (_("Recovered (%d):"), sections.recovered, lambda i: [_line(i)]),
    ]


def _fill(head: list[str], sections: list[_Section], footer: list[str]) -> str:
    """Lines in order of urgency while they fit TEXT_MAX; the rest of a section becomes a
    count. Each section keeps room for its own count line, so nothing is dropped silently."""
    sections = [section for section in sections if section[1]]
    # What each section needs at least: its title and a count of what it could not show.
    least = [
        len(title % len(items)) + len(_("…and %d more.") % len(items)) + 3
        for title, items, _lines in sections
    ]
    lines = list(head)
    used = len("\n".join(head + footer)) + 1
    for index, (title, incidents, lines_of) in enumerate(sections):
        lines += ["", title % len(incidents)]
        used += len(lines[-1]) + 2
        later = sum(least[index + 1 :])
        for shown, incident in enumerate(incidents):
            more = _("…and %d more.") % (len(incidents) - shown)
            item = lines_of(incident)
            size = sum(len(line) + 1 for line in item)
            if used + size + len(more) + 1 + later > TEXT_MAX:
                lines.append(more)
                used += len(more) + 1
                break
            lines += item
            used += size
    return "\n".join(lines + footer)


def _line(incident: Incident) -> str:
    code = incident.error_code or "?"
    if incident.kind == Incident.Kind.OUTAGE:
        count = incident.affected_tokens
        what = (
            ngettext(
                "authorization server outage, %d token",
                "authorization server outage, %d tokens",
                count,
            )
            % count
        )
        return f"- {what} — {code}"
    if incident.kind == Incident.Kind.CHANNEL:
        names = channel_names(incident)
        return "- " + _("alert channel “%(name)s” (%(provider)s) switched off") % names
    t = token_facts(incident)
    return f"- {t.portal} / {t.reference} — {code} — " + _("owner: %s") % t.owner


def _act_lines(incident: Incident) -> list[str]:
    """A new incident a person must act on: who, what failed, what to do, where to click."""
    if incident.kind == Incident.Kind.CHANNEL:
        link = channel_link(incident.channel_id)
        why = shorten(incident.message, REASON_MAX)
        return [_line(incident), "  " + _("Why: %s") % why, "  " + _("Channel page: %s") % link]
    if incident.kind == Incident.Kind.OUTAGE:
        return [_line(incident), "  " + _("What to do: %s") % advice(incident)]
    return [
        _line(incident),
        "  " + _("What to do: %s") % advice(incident),
        "  " + _("Token page: %s") % token_facts(incident).link,
    ]


def _sms(sections: _Sections, summary: str, link: str) -> str:
    """The summary, then the incidents a person must act on, newest first, grouped by what to
    do, while DIGEST_SMS_PARTS parts hold them (the link kept for the rest)."""
    limit = DIGEST_SMS_PARTS * PER_PART
    head = _("b24keeper: %s.") % summary
    if not sections.act:
        return sms(head, link, limit)
    groups: dict[str, list[str]] = {}
    for incident in sections.act:
        groups.setdefault(_sms_advice(incident), []).append(_sms_name(incident))
    shown, text = 0, head
    for todo, names in groups.items():
        for count in range(len(names), 0, -1):
            candidate = f"{text} {', '.join(names[:count])}: {todo}"
            rest = len(sections.act) - shown - count
            tail = f" {_('+%d more') % rest}" if rest else ""
            if septets(sms(candidate + tail + " " + link, limit=10**6)) <= limit:
                text, shown = candidate, shown + count
                break
        else:
            break
    rest = len(sections.act) - shown
    if rest:
        text += " " + _("+%d more") % rest
    return sms(text, link, limit)


def _sms_name(incident: Incident) -> str:
    if incident.kind == Incident.Kind.CHANNEL:
        return _("channel %(name)s off") % channel_names(incident)
    if incident.kind == Incident.Kind.OUTAGE:
        return _("auth server outage")
    t = token_facts(incident)
    return f"{t.portal} {t.reference} {incident.error_code or '?'}"


def _sms_advice(incident: Incident) -> str:
    if incident.kind == Incident.Kind.CHANNEL:
        return _("fix it, then enable it")
    return advice(incident)
