"""The "Add task" form: connect a portal in one step, as the old process did."""

from django import forms

from portals.validation import PORTAL_HELP


class ConnectPortalForm(forms.Form):
    portal = forms.CharField(max_length=255, help_text=PORTAL_HELP)
    client_id = forms.CharField(
        max_length=50, help_text="From the application's card, e.g. local.6a1b2c3d4e5f60.48151623"
    )
    client_secret = forms.CharField(
        max_length=200,
        widget=forms.PasswordInput(render_value=False),
        help_text="Stored encrypted and never shown again.",
    )
    scope = forms.CharField(max_length=500, initial="crm,user", help_text="Comma-separated.")
    code = forms.CharField(
        max_length=200,
        widget=forms.TextInput(attrs={"autocomplete": "off"}),
        help_text="Open the authorize URL below, then paste the code here and submit at once: "
        "it lives 30 seconds.",
    )
    reference = forms.SlugField(
        max_length=100,
        initial="token",
        help_text="The name other code uses to get this token.",
    )
    app_name = forms.CharField(
        label="App display name",
        max_length=200,
        required=False,
        help_text="Optional; defaults to the client_id.",
    )
