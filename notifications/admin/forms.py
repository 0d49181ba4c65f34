"""The channel form: credential inputs built from each backend's credential_fields.

Secrets are write-only (a password input that never shows the stored value; empty keeps it).
Non-secret settings such as a sender name show their stored value. On a new channel the form
holds every provider's inputs, one group each; only the chosen provider's are read.
"""

import re
from typing import Any

from django import forms
from django.core import signing
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.utils.text import format_lazy
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, gettext_noop
from django.views.decorators.debug import sensitive_variables

from encryption import crypto
from encryption.crypto import DecryptionError
from notifications.backends import BACKENDS, ConfigurationError, CredentialField, get_backend
from notifications.backends.base import DESTINATIONS
from notifications.models import Channel, default_alert_language

KEPT = "__kept"  # the hidden input beside a secret input that holds what was typed
KEPT_FOR = 600  # seconds a typed secret survives form errors
# Spaces, dots, dashes and brackets people type in phone numbers; 00 is the international "+".
PHONE_PUNCTUATION = re.compile(r"[\s.()\-]")


# What each kind of destination looks like (notifications.backends.base.DESTINATIONS), marked
# here so that the form says it in the reader's language.
EXPECTED = (
    gettext_noop("a phone number in E.164 form, such as +15550100123"),
    gettext_noop("an email address, such as ann@example.org"),
    gettext_noop("a Telegram chat id (such as 987654321 or -1001234567890) or @channelname"),
)


def credential_input(kind: str, name: str) -> str:
    return f"{kind}__{name}"


class KeptSecretInput(forms.PasswordInput):
    """A secret input that survives a form error without showing the secret: what was typed
    goes back to the browser only encrypted and signed (for KEPT_FOR seconds) in a hidden
    input beside it, and is used again when the input is left empty."""

    def __init__(self) -> None:
        super().__init__(render_value=False, attrs={"autocomplete": "off"})

    @sensitive_variables()
    def render(self, name: str, value: Any, attrs: Any = None, renderer: Any = None) -> SafeString:
        html = super().render(name, value, attrs, renderer)
        if not value:
            return html
        kept = signing.dumps(crypto.encrypt(str(value)), salt=KEPT)
        note = _("Kept from your last attempt (encrypted): leave empty to use it.")
        return format_html(
            '{}<input type="hidden" name="{}" value="{}"><div class="help kept-secret">{}</div>',
            html,
            name + KEPT,
            kept,
            note,
        )

    @sensitive_variables()
    def value_from_datadict(self, data: Any, files: Any, name: str) -> Any:
        typed = data.get(name)
        if typed or not data.get(name + KEPT):
            return typed
        try:
            return crypto.decrypt(signing.loads(data[name + KEPT], salt=KEPT, max_age=KEPT_FOR))
        except (signing.BadSignature, DecryptionError):
            return ""  # too old or not ours: asked for again


def normalize_phone(value: str) -> str:
    """A phone number as typed (“+1 555 010-0123”, “00 7 (912) 345 67 89”) in E.164."""
    number = PHONE_PUNCTUATION.sub("", value)
    return "+" + number[2:] if number.startswith("00") else number


def _input(credential: CredentialField) -> forms.CharField:
    if credential.secret:
        return forms.CharField(
            label=credential.label,
            required=False,
            widget=KeptSecretInput(),
            help_text=format_lazy(
                "{} {}",
                credential.help_text,
                gettext_lazy(
                    "Stored encrypted and never shown again; leave empty to keep the stored value."
                ),
            ),
        )
    return forms.CharField(label=credential.label, required=False, help_text=credential.help_text)


class _ChannelForm(forms.ModelForm):
    class Meta:
        model = Channel
        fields = [
            "name",
            "kind",
            "destination",
            "language",
            "enabled",
            "covers_all_tokens",
            "portals",
            "tokens",
            "max_per_hour",
            "remind_every_minutes",
        ]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.instance.pk:  # non-secret settings show what is stored
            stored = self._stored()
            for credential in BACKENDS[self.instance.kind].credential_fields:
                name = credential_input(self.instance.kind, credential.name)
                if not credential.secret and name in self.fields:
                    self.fields[name].initial = stored.get(credential.name, "")
        self.credentials: dict[str, str] = {}
        if "language" in self.fields:  # not sent (an older form, a script): the default
            self.fields["language"].required = False

    def clean_language(self) -> str:
        return (
            self.cleaned_data.get("language")
            or self.instance.language
            or (default_alert_language())
        )

    @sensitive_variables()
    def clean(self) -> dict[str, Any]:
        super().clean()
        cleaned = self.cleaned_data  # the stubs allow None; ModelForm.clean returns this
        kind = cleaned.get("kind") or self.instance.kind
        if kind not in BACKENDS:
            return cleaned
        backend = BACKENDS[kind]
        self.credentials = self._credentials(kind, cleaned)
        destination = (cleaned.get("destination") or "").strip()
        if backend.destination_kind == "phone":
            destination = normalize_phone(destination)
            if "destination" in cleaned:
                cleaned["destination"] = destination
        is_valid, expected = DESTINATIONS[backend.destination_kind]
        if "destination" in cleaned and not is_valid(destination):
            message = _("A %(provider)s channel needs %(expected)s.")
            self.add_error(
                "destination", message % {"provider": backend.label, "expected": _(expected)}
            )
        if not cleaned.get("covers_all_tokens", self.instance.covers_all_tokens) and not (
            cleaned.get("portals") or cleaned.get("tokens")
        ):
            self.add_error(
                "covers_all_tokens", _("Tick “all tokens”, or choose the portals or tokens below.")
            )
        if not self.errors:
            try:
                get_backend(kind, self.credentials, destination)
            except ConfigurationError as err:
                self.add_error(None, str(err))
        return cleaned

    @sensitive_variables()
    def _credentials(self, kind: str, cleaned: dict[str, Any]) -> dict[str, str]:
        """The stored values (same provider only), overwritten by what was typed."""
        same = self.instance.pk and self.instance.kind == kind
        values = self._stored() if same else {}
        backend = BACKENDS[kind]
        for credential in backend.credential_fields:
            name = credential_input(kind, credential.name)
            typed = (cleaned.get(name) or "").strip()
            if typed or not credential.secret:  # an empty secret keeps the stored one
                values[credential.name] = typed
            if credential.required and not values.get(credential.name):
                message = _("Enter the %(provider)s %(credential)s.")
                self.add_error(
                    name, message % {"provider": backend.label, "credential": credential.label}
                )
        return {k: v for k, v in values.items() if v}

    def _stored(self) -> dict[str, str]:
        try:
            return self.instance.get_credentials()
        except ConfigurationError:
            return {}  # unreadable (a lost key): the form asks for all of them again

    @sensitive_variables()
    def save(self, commit: bool = True) -> Channel:
        self.instance.set_credentials(self.credentials)
        self.instance.destination = self.instance.destination.strip()
        return super().save(commit)


# The admin builds its form class from the declared fields, so the credential inputs are
# declared on the class (one per provider and credential), not added per instance.
ChannelForm = type(
    "ChannelForm",
    (_ChannelForm,),
    {
        "__module__": __name__,
        **{
            credential_input(kind, credential.name): _input(credential)
            for kind, backend in BACKENDS.items()
            for credential in backend.credential_fields
        },
    },
)
