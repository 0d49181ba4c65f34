"""The connect forms: "Add task" (connect in one step with a code, as the old process did) and
"Connect a new portal" (the OAuth redirect, no code to copy)."""

from typing import Any

from django import forms
from django.utils.translation import gettext_lazy as _

from portals.bitrix.identifiers import PORTAL_HELP
from portals.models import AppCredentials

CODE_HELP = _(
    "Where the code appears: after you open the authorize URL and allow access, Bitrix24 "
    "opens the app's page, and its address holds the code as the code= parameter "
    "(…?code=6dm7bdbh…&domain=…). Copy only that value, paste it here and press Connect at "
    "once: a code lives 30 seconds and works once."
)
HELD_SECRET_HELP = _(
    "The secret you typed in your last attempt is kept (encrypted, for 10 minutes): leave "
    "this empty to use it again, or type another."
)


SPENT_CODE = _(
    "This code was spent by the attempt (a code works once): open the authorize URL again and "
    "paste the new code."
)
# Taken from the stored app credentials when the app is known (the app's page changes them).
STORED_FIELDS = ("client_secret", "scope")


class SpentValueInput(forms.TextInput):
    """A text input that never shows a submitted value again: put on the code field once an
    exchange has spent it, so the form does not offer the spent one."""

    def format_value(self, value: Any) -> str | None:
        return None


class ConnectPortalForm(forms.Form):
    portal = forms.CharField(label=_("Portal"), max_length=255, help_text=PORTAL_HELP)
    client_id = forms.CharField(
        label=_("client_id"),
        max_length=50,
        help_text=_("From the application's card, e.g. local.6a1b2c3d4e5f60.48151623"),
    )
    client_secret = forms.CharField(
        label=_("client_secret"),
        max_length=200,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "off"}),
        help_text=_("Stored encrypted and never shown again."),
    )
    scope = forms.CharField(
        label=_("scope"), max_length=500, initial="crm,user", help_text=_("Comma-separated.")
    )
    code = forms.CharField(
        label=_("code"),
        max_length=200,
        widget=forms.TextInput(attrs={"autocomplete": "off"}),
        help_text=CODE_HELP,
    )
    reference = forms.SlugField(
        label=_("Reference"),
        max_length=100,
        initial="token",
        help_text=_("The name other code uses to get this token."),
    )
    app_name = forms.CharField(
        label=_("App display name"),
        max_length=200,
        required=False,
        help_text=_("Optional; defaults to the client_id."),
    )

    def __init__(
        self,
        *args: Any,
        secret_held: bool = False,
        known_app: AppCredentials | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.known_app = known_app
        if known_app is not None:  # the stored secret and scope are used: not asked for
            for name in STORED_FIELDS:
                if not (self.data.get(name) or "").strip():
                    del self.fields[name]
        if secret_held and "client_secret" in self.fields:
            field = self.fields["client_secret"]
            field.required = False
            field.help_text = HELD_SECRET_HELP
            field.widget.attrs["placeholder"] = "••••••••"

    def spend_code(self) -> None:
        """The exchange used the code: show the field empty and say why."""
        self.fields["code"].widget = SpentValueInput(attrs={"autocomplete": "off"})
        if "code" not in self.errors:
            self.add_error("code", str(SPENT_CODE))


class ConnectNewPortalForm(forms.Form):
    app = forms.ModelChoiceField(
        label=_("App credentials"),
        queryset=AppCredentials.objects.defer("client_secret"),
        help_text=_(
            "The app whose handler addresses you entered in Bitrix24 (see its page under App "
            "credentials). Its client secret stays here."
        ),
    )
    portal = forms.CharField(label=_("Portal"), max_length=255, help_text=PORTAL_HELP)
    reference = forms.SlugField(
        label=_("Reference"),
        max_length=100,
        required=False,
        help_text=_("The name other code uses to get this token. Empty: the portal's name."),
    )
