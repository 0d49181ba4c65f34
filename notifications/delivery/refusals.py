"""A provider's refusal as staff read it in the admin ("Send test message"): the provider's
words quoted as they came, what to do in the reader's language (each rule's advice is a
catalogue entry: notifications/backends mark them). Called by notifications.delivery.sending."""

import re

from django.utils.translation import get_language, gettext
from django.utils.translation import gettext as _

from notifications.backends.errors import DeliveryError

# How DeliveryError.__str__ writes a provider's refusal (stored in English): the provider, its
# words, the code, then the advice.
STORED = re.compile(
    r"^(?P<provider>[\w ]+?) says: (?P<what>.*) \((?P<code>[^()]*)\)\.(?: (?P<advice>.*))?$", re.S
)


def advice_text(advice: str) -> str:
    """A provider rule's advice in the active language: the whole, or sentence by sentence
    (rules join a sentence and a shared one, each a catalogue entry)."""
    whole = gettext(advice)
    if whole != advice:
        return whole
    said = []
    for sentence in re.split(r"(?<=[.!?]) (?=\S)", advice):
        fragment = sentence + " "  # a rule's first sentence, which a shared one continues
        translated = gettext(fragment).strip()
        said.append(translated if translated != sentence else gettext(sentence))
    return " ".join(said)


def delivery_error_text(err: DeliveryError, english: str) -> str:
    """A provider's refusal as staff read it: the provider's words quoted as they came, what
    to do in the active language. In English, `english` (the text as the caller wrote it)."""
    if (get_language() or "en").startswith("en"):
        return english
    what = err.description.rstrip(". ")
    if err.from_provider:
        names = {"provider": err.provider, "what": what, "code": err.code}
        head = _("%(provider)s says: “%(what)s” (%(code)s).") % names
    else:  # our own words about the provider (a timeout): kept
        head = f"{err.provider} {what} ({err.code})."
    parts = [head, advice_text(err.advice)] if err.advice else [head]
    if err.retry_after is not None:
        parts.append(
            _("Retry in no less than %(seconds)s s.") % {"seconds": f"{err.retry_after:g}"}
        )
    return " ".join(parts)


def stored_text(text: str) -> str:
    """A refusal stored in English (a delivery's or a channel's last error) in the active
    language; a text of another shape is shown as it is."""
    found = STORED.match(text or "")
    if found is None or (get_language() or "en").startswith("en"):
        return text
    names = {"provider": found["provider"], "what": found["what"], "code": found["code"]}
    head = _("%(provider)s says: “%(what)s” (%(code)s).") % names
    return f"{head} {advice_text(found['advice'])}" if found["advice"] else head
