"""The channel form: credential inputs built from each backend's credential_fields.

Secrets are write-only (a password input that never shows the stored value; empty keeps it).
Non-secret settings such as a sender name show their stored value. On a new channel the form
holds every provider's inputs, one group each; only the chosen provider's are read.
"""

from typing import Any

from django import forms
from django.utils.text import format_lazy
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.debug import sensitive_variables

from notifications.backends import BACKENDS, ConfigurationError, CredentialField, get_backend
from notifications.backends.base import DESTINATIONS
from notifications.models import Channel


def credential_input(kind: str, name: str) -> str:
    return f"{kind}__{name}"


def _input(credential: CredentialField) -> forms.CharField:
    if credential.secret:
        return forms.CharField(
            label=credential.label,
            required=False,
            widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "off"}),
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
        is_valid, expected = DESTINATIONS[backend.destination_kind]
        if "destination" in cleaned and not is_valid(destination):
            message = _("A %(provider)s channel needs %(expected)s.")
            self.add_error(
                "destination", message % {"provider": backend.label, "expected": expected}
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
