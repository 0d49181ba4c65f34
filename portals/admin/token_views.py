"""The token admin's own pages and buttons: "Add task" (connect with a code), "Connect a new
portal" and Re-connect (the OAuth redirect with a state), the re-connect awaiting
confirmation, and Refresh now / Disable / Enable on a token's page.

Each view checks the permission of what it does (the same as the list's actions), says what
happened with a message, and changes tokens only through portals.connect and portals.tokens.state.
"""

from typing import Any
from urllib.parse import urlencode

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.decorators import method_decorator
from django.utils.translation import gettext as _
from django.views.decorators.debug import sensitive_post_parameters, sensitive_variables
from django.views.decorators.http import require_POST

from core.denied import require
from portals.admin.shown import refresh_error_text
from portals.bitrix import oauth
from portals.bitrix.errors import OAuthError
from portals.bitrix.identifiers import normalize_portal_address
from portals.connect import grants, states
from portals.connect.code import ConnectInput, OtherPortal, authorize_url, connect_portal
from portals.connect.forms import HELD_SECRET_HELP, ConnectNewPortalForm, ConnectPortalForm
from portals.connect.grants import ConnectError
from portals.connect.views import missing_scopes_text
from portals.models import AppCredentials, Token, TokenStatus
from portals.tokens import TokenError, refresh, state

CONNECT, REFRESH, TOGGLE = "portals.connect_portal", "portals.refresh_token", "portals.toggle_token"
# Changing a stored app's client_secret or scope, through its own page or "Add task".
CHANGE_APP = "portals.change_appcredentials"
# Kept from a failed "Add task" attempt (never the secret or the spent code).
KEPT_FIELDS = ("portal", "client_id", "scope", "reference", "app_name")


def user_id(request: HttpRequest) -> int:
    """The signed-in staff user's id (admin_view lets nobody else reach these views)."""
    user = request.user
    if not user.is_authenticated:
        raise PermissionDenied(_("Log in first."))
    return user.pk


class TokenViewsMixin(admin.ModelAdmin):
    """Mixed into TokenAdmin: its extra URLs and views."""

    def get_urls(self) -> list:
        view = self.admin_site.admin_view
        own = [
            path("connect/", view(self.connect_view), name="portals_token_connect"),
            path("connect-new/", view(self.connect_new_view), name="portals_token_connect_new"),
            path("<int:pk>/reconnect/", view(self.reconnect_view), name="portals_token_reconnect"),
            path("<int:pk>/refresh/", view(self.refresh_view), name="portals_token_refresh"),
            path("<int:pk>/toggle/", view(self.toggle_view), name="portals_token_toggle"),
            path("pending/<int:pk>/", view(self.pending_view), name="portals_token_pending"),
        ]
        return [*own, *super().get_urls()]

    def _render(self, request: HttpRequest, template: str, **context: Any) -> HttpResponse:
        context = {
            **self.admin_site.each_context(request),
            "opts": Token._meta,
            **context,
        }
        return TemplateResponse(request, template, context)

    def _token_page(self, token: Token) -> HttpResponseRedirect:
        return HttpResponseRedirect(reverse("admin:portals_token_change", args=[token.pk]))

    # --- "Add task": connect with a code --------------------------------------------------------
    @method_decorator(sensitive_post_parameters("client_secret", "code"))
    @method_decorator(sensitive_variables())
    def connect_view(self, request: HttpRequest) -> HttpResponse:
        """Exchanges the code within this same request. A known app's stored secret and scope
        are used (not asked for). A form error keeps everything typed, the code included; a
        failed exchange keeps the typed secret in the session (encrypted, 10 minutes) and
        clears only the spent code."""
        require(request, CONNECT)
        held = states.held_secret(request.session)
        data = request.POST if request.method == "POST" else request.GET
        known = _known_app(data.get("client_id"))
        if request.method != "POST":
            initial = {name: request.GET[name] for name in KEPT_FIELDS if name in request.GET}
            form = ConnectPortalForm(initial=initial, secret_held=held is not None, known_app=known)
            return self._connect_page(request, form, request.GET)
        typed = request.POST.get("client_secret", "").strip()
        secret = typed or held
        if "_preview" in request.POST:  # only show the authorize URL
            if typed:
                states.hold_secret(request.session, typed)
            typed_in = {name: request.POST.get(name) for name in (*KEPT_FIELDS, "code")}
            form = ConnectPortalForm(initial=typed_in, secret_held=bool(secret), known_app=known)
            return self._connect_page(request, form, request.POST)
        form = ConnectPortalForm(request.POST, secret_held=held is not None, known_app=known)
        if form.is_valid():
            stored = _stored_credentials(known, form.cleaned_data)
            try:
                return self._connect(
                    request, {**form.cleaned_data, "client_secret": secret or "", **stored}
                )
            except (ValidationError, ConnectError) as err:
                if "client_secret" in _fields(err):  # the secret is wrong: ask for it again
                    states.forget_secret(request.session)
                    form, secret = _without_held_secret(form, known), None
                _add_errors(form, err)
                if isinstance(err, ConnectError):  # Bitrix24 answered: the code is spent
                    form.spend_code()
        if typed and secret:  # a failed attempt: the next one need not retype it
            states.hold_secret(request.session, typed)
            form = _with_held_secret(form)
        return self._connect_page(request, form, request.POST)

    @method_decorator(sensitive_variables())
    def _connect(self, request: HttpRequest, typed: dict[str, Any]) -> HttpResponse:
        """Connect as this user may (changing a stored app needs CHANGE_APP). A code from
        another portal waits for confirmation, as from the Connect button; ValidationError
        or ConnectError otherwise."""
        user = request.user
        data = ConnectInput(**typed, owner_id=user.pk, may_change_app=user.has_perm(CHANGE_APP))
        try:
            token = connect_portal(data)
        except OtherPortal as err:
            if err.token is None:
                raise  # nothing to re-connect: the form says where the code came from
            pending = states.hold_pair(
                err.token, err.grant, err.domain, request.session, user_id(request)
            )
            states.forget_secret(request.session)
            return HttpResponseRedirect(reverse("admin:portals_token_pending", args=[pending.pk]))
        states.forget_secret(request.session)
        return self._connected(request, token)

    def _connected(self, request: HttpRequest, token: Token) -> HttpResponse:
        messages.success(
            request,
            _("Connected %(portal)s as “%(reference)s”.")
            % {"portal": token.portal.domain, "reference": token.reference},
        )
        if missing := token.missing_scopes():
            messages.warning(request, missing_scopes_text(missing))
        return self._token_page(token)

    def _connect_page(self, request: HttpRequest, form: forms.Form, data: Any) -> HttpResponse:
        return self._render(
            request,
            "admin/portals/token/connect.html",
            title=_("Add task: connect a portal"),
            form=form,
            known_app=getattr(form, "known_app", None),
            may_change_app=request.user.has_perm(CHANGE_APP),
            authorize_url=_authorize_url_for(data),
            default_zone=settings.BITRIX_DEFAULT_ZONE,
            allow_http=settings.BITRIX_ALLOW_HTTP,
            countdown_texts={
                "left": _("The code expires in %(seconds)s s: paste it and press Connect."),
                "expired": _("The code has expired: open the authorize URL again."),
            },
        )

    # --- The OAuth redirect: a new portal, or a token's re-connect --------------------------------
    def connect_new_view(self, request: HttpRequest) -> HttpResponse:
        require(request, CONNECT)
        form = ConnectNewPortalForm(request.POST or None, initial=request.GET.dict())
        if request.method == "POST" and form.is_valid():
            app, domain = form.cleaned_data["app"], form.cleaned_data["portal"]
            try:
                domain = normalize_portal_address(domain)
                reference = form.cleaned_data["reference"]
                existing = _existing_token(domain, app, reference)
            except ValidationError as err:
                _add_errors(form, err)
            else:
                return self._redirect_to_portal(request, app, domain, existing, reference)
        return self._render(
            request,
            "admin/portals/token/connect_new.html",
            title=_("Connect a new portal"),
            form=form,
        )

    @method_decorator(require_POST)
    def reconnect_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        require(request, CONNECT)
        token = get_object_or_404(Token.objects.select_related("portal", "app"), pk=pk)
        return self._redirect_to_portal(request, token.app, token.portal.domain, token, "")

    def _redirect_to_portal(
        self, request: HttpRequest, app: Any, domain: str, token: Token | None, reference: str
    ) -> HttpResponse:
        state = states.issue(
            request.session, user_id(request), app, domain, token=token, reference=reference
        )
        return HttpResponseRedirect(oauth.authorize_url(domain, app.client_id, state))

    @method_decorator(sensitive_variables())
    def pending_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        """A re-connect answered by another portal: confirm (store) or cancel (drop)."""
        require(request, CONNECT)
        pending = states.pending_for(pk, request.session, user_id(request))
        if pending is None:
            return self._render(
                request,
                "admin/portals/token/pending.html",
                title=_("Re-connect awaiting confirmation"),
                pending=None,
            )
        token = pending.token
        if request.method == "POST" and "_confirm" in request.POST:
            grant = states.grant_of(pending)
            try:
                token = grants.store_grant(
                    token.app, grant, pending.domain, token=token, owner_id=request.user.pk,
                    started=pending.created_at, duration_ms=0,
                )  # fmt: skip
            except ConnectError as err:
                messages.error(request, str(err))
                return self._token_page(token)
            finally:
                pending.delete()
            grants.check_scope(token)
            return self._connected(request, token)
        if request.method == "POST":
            pending.delete()
            messages.info(request, _("Cancelled: nothing was stored; the token is unchanged."))
            return self._token_page(token)
        return self._render(
            request,
            "admin/portals/token/pending.html",
            title=_("Re-connect awaiting confirmation"),
            pending=pending,
            token=token,
        )

    # --- Buttons on a token's page ----------------------------------------------------------------
    @method_decorator(require_POST)
    def refresh_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        require(request, REFRESH)
        token = get_object_or_404(Token.objects.defer("access_token", "refresh_token"), pk=pk)
        try:
            refresh(token.reference)
        except (OAuthError, TokenError) as err:
            messages.error(
                request,
                _("“%(reference)s” was not refreshed: %(error)s")
                % {
                    "reference": token.reference,
                    "error": refresh_error_text(err, token.reference),
                },
            )
        else:
            messages.success(request, _("Refreshed “%(reference)s”.") % {"reference": token})
        return self._token_page(token)

    @method_decorator(require_POST)
    def toggle_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        require(request, TOGGLE)
        token = get_object_or_404(Token.objects.defer("access_token", "refresh_token"), pk=pk)
        if token.status == TokenStatus.DISABLED:
            state.enable([token.pk])
            text = _("Enabled “%(reference)s”: it refreshes on schedule again, within a minute.")
        elif "_confirm" not in request.POST:  # it stops serving every consumer: ask first
            return self._render(
                request,
                "admin/portals/token/confirm_disable.html",
                title=_("Disable “%(reference)s”?") % {"reference": token.reference},
                token=token,
            )
        else:
            state.disable([token.pk])
            text = _("Disabled “%(reference)s”: it is no longer refreshed or handed out.")
        messages.success(request, text % {"reference": token.reference})
        return self._token_page(token)


def _existing_token(domain: str, app: Any, reference: str) -> Token | None:
    """The token a connect of (domain, app) would update, after checking the reference."""
    existing = Token.objects.filter(portal__domain=domain, app=app).first()
    if reference:
        taken = Token.objects.filter(reference=reference).exclude(
            pk=existing.pk if existing else None
        )
        if taken.exists():
            message = _("“%(reference)s” is taken: choose another.")
            raise ValidationError({"reference": message % {"reference": reference}})
    return existing


def _fields(err: ValidationError | ConnectError) -> set[str | None]:
    """The inputs an error is about (None: the whole form)."""
    if isinstance(err, ConnectError):
        return {err.field}
    return set(getattr(err, "message_dict", {None: ()}))


def _add_errors(form: forms.Form, err: ValidationError | ConnectError) -> None:
    if isinstance(err, ConnectError):
        form.add_error(err.field if err.field in form.fields else None, str(err))
        return
    for field, messages_ in getattr(err, "message_dict", {None: err.messages}).items():
        form.add_error(field if field in form.fields else None, messages_)


def _known_app(client_id: str | None) -> AppCredentials | None:
    """The stored app of the client_id typed (or prefilled), whose secret and scope are used."""
    client_id = (client_id or "").strip()
    if not client_id:
        return None
    return AppCredentials.objects.filter(client_id=client_id).first()


@sensitive_variables()
def _stored_credentials(known: AppCredentials | None, cleaned: dict[str, Any]) -> dict[str, str]:
    """The known app's secret and scope, for the fields the form did not ask for."""
    if known is None:
        return {}
    stored = {"client_secret": known.client_secret, "scope": known.scope}
    return {name: value for name, value in stored.items() if not cleaned.get(name)}


def _with_held_secret(form: ConnectPortalForm) -> ConnectPortalForm:
    """The failed attempt's form, saying the secret just typed is kept."""
    if "client_secret" not in form.fields:
        return form
    field = form.fields["client_secret"]
    field.required, field.help_text = False, HELD_SECRET_HELP
    field.widget.attrs["placeholder"] = "••••••••"
    form["client_secret"].help_text = HELD_SECRET_HELP  # the bound field copied the old one
    return form


def _without_held_secret(
    form: ConnectPortalForm, known: AppCredentials | None
) -> ConnectPortalForm:
    """The same attempt, asking for the secret again (the kept one was wrong)."""
    fresh = ConnectPortalForm(form.data, known_app=known)
    fresh.is_valid()
    fresh.errors.pop("client_secret", None)  # Bitrix24's error is about to say it better
    return fresh


def _authorize_url_for(data: Any) -> str:
    portal, client_id = data.get("portal"), data.get("client_id")
    if not (portal and client_id):
        return ""
    try:
        return authorize_url(portal, client_id)
    except (ValidationError, OAuthError):
        return ""


def add_task_url(token: Token) -> str:
    """ "Add task" filled in for this token: re-connect it with a code."""
    query = {
        "portal": token.portal.domain,
        "client_id": token.app.client_id,
        "scope": token.app.scope,
        "reference": token.reference,
    }
    return f"{reverse('admin:portals_token_connect')}?{urlencode(query)}"
