"""The addresses Bitrix24 calls (a contract: the app's settings in Bitrix24 point here).

    GET  /bitrix/<client_id>/callback/   the OAuth redirect target (docs/bitrix24-protocol.md §1)
    POST /bitrix/<client_id>/install/    the install frame and ONAPPINSTALL (§6.1, §6.2)
    POST /bitrix/<client_id>/events/     ONAPPINSTALL, ONAPPUPDATE, ONAPPUNINSTALL (§6.3)

The callback is a browser page for logged-in staff. Install and events are server-to-server (no CSRF
token; they prove themselves by app.info and user.admin, or the application_token:
portals.connect.install) and answer a quick 200 when accepted or ignored (a replay: Bitrix24 must
not retry), and one 403 `{"error": "not_authenticated"}` for every event that is not authenticated,
whatever the reason (that goes to the log). Only the install page may be framed by the portal; a
refused frame gets a page saying why.
"""

import logging

from django.conf import settings
from django.contrib import admin, messages
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.shortcuts import render
from django.urls import reverse
from django.utils import translation
from django.utils.translation import gettext as _
from django.views.decorators.clickjacking import xframe_options_exempt
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.debug import sensitive_post_parameters, sensitive_variables
from django.views.decorators.http import require_GET, require_POST

from portals.connect import callback, install
from portals.connect.inbound import form_only
from portals.models import AppCredentials

log = logging.getLogger(__name__)
CONNECT = "portals.connect_portal"
NOT_AUTHENTICATED = {"error": "not_authenticated"}


@require_GET
@sensitive_variables()
def bitrix_callback(request: HttpRequest, client_id: str) -> HttpResponse:
    user = request.user
    if not user.is_authenticated or not user.is_active:
        log.warning("callback for %r refused: no logged-in staff session", client_id)
        return _refused(
            request,
            _(
                "Nobody is logged in to b24keeper in this browser, so this answer cannot be "
                "matched to a connect. Log in, open the token (or “Connect a new portal”) and "
                "press Connect again; the code from this answer is not used."
            ),
            403,
        )
    if not user.has_perm(CONNECT):
        log.warning("callback for %r refused: %s may not connect portals", client_id, user)
        return _refused(request, _("Connecting portals needs the “connect portals” permission."))
    try:
        outcome = callback.finish(request.GET, client_id, request.session, user.pk)
    except callback.CallbackRefused as err:
        return _refused(request, str(err), err.status)
    if isinstance(outcome, callback.Held):
        return HttpResponseRedirect(
            reverse("admin:portals_token_pending", args=[outcome.pending.pk])
        )
    token = outcome.token
    messages.success(
        request,
        _("Connected %(portal)s as “%(reference)s”.")
        % {"portal": token.portal.domain, "reference": token.reference},
    )
    if outcome.missing_scopes:
        messages.warning(request, missing_scopes_text(outcome.missing_scopes))
    return HttpResponseRedirect(reverse("admin:portals_token_change", args=[token.pk]))


def missing_scopes_text(missing: list[str]) -> str:
    return _(
        "Bitrix24 did not grant the scope(s) %(missing)s that the app asks for. Add them to the "
        "application in Bitrix24, then re-connect."
    ) % {"missing": ", ".join(missing)}


def _refused(request: HttpRequest, message: str, status: int = 403) -> HttpResponse:
    context = {
        **admin.site.each_context(request),
        "title": _("The connect was refused"),
        "message": message,
    }
    return render(request, "portals/refused.html", context, status=status)


@csrf_exempt
@require_POST
@form_only()  # a small urlencoded form, judged before the body is read (415, 413)
@xframe_options_exempt  # the portal shows this page in its install frame (§6.1)
@sensitive_post_parameters()  # the form holds tokens and the application_token
def bitrix_install(request: HttpRequest, client_id: str) -> HttpResponse:
    outcome = _accept(request, client_id, "install")
    if isinstance(outcome, HttpResponse):
        return outcome
    if outcome.event == install.FRAME:  # installed, or already (a replay): finish either way
        with translation.override(_frame_language(request)):
            return render(request, "portals/install_finish.html")
    return JsonResponse({"result": outcome.result})


@csrf_exempt
@require_POST
@form_only()  # a small urlencoded form, judged before the body is read (415, 413)
@sensitive_post_parameters()
def bitrix_events(request: HttpRequest, client_id: str) -> HttpResponse:
    outcome = _accept(request, client_id, "events")
    if isinstance(outcome, HttpResponse):
        return outcome
    result = "ignored" if outcome.result == "ignored" else "accepted"
    return JsonResponse({"result": result, "event": outcome.event})


@sensitive_variables()
def _accept(request: HttpRequest, client_id: str, where: str) -> install.Outcome | HttpResponse:
    app = AppCredentials.objects.filter(client_id=client_id).first()
    try:
        if app is None:
            raise install.EventRefused(f"no app credentials for client_id {client_id!r}")
        payload = install.parse(request)
        outcome = install.handle(app, payload)
    except install.EventRefused as err:
        log.warning("%s for %r refused (HTTP %d): %s", where, client_id, err.status, err.reason)
        return _event_refused(request, err)
    log.info("%s for %r: %s %s", where, client_id, payload.event, outcome.result)
    return outcome


def _event_refused(request: HttpRequest, err: install.EventRefused) -> HttpResponse:
    """The install frame gets a page saying why (shown inside the portal). An event gets one
    answer for everything unauthenticated, so it tells nobody which portals are connected."""
    if request.POST.get("AUTH_ID") and not request.POST.get("event"):
        with translation.override(_frame_language(request)):
            context = {"message": str(err.message)}
            return render(request, "portals/install_refused.html", context, status=err.status)
    if err.status == 403:
        return JsonResponse(NOT_AUTHENTICATED, status=403)
    if err.status == 409:
        return JsonResponse({"error": "address_taken"}, status=409)
    return JsonResponse({"error": err.reason}, status=err.status)


# Bitrix24's interface languages whose users read Russian best of the languages we have.
RUSSIAN_READERS = {"ru", "ua", "by", "kz"}


def _frame_language(request: HttpRequest) -> str:
    """The portal names its interface language in the frame's query (LANG, §6.1; some
    portals post it with the form): ours if we have it, Russian for the portals whose users
    read it, else the language the browser asked for."""
    wanted = (request.GET.get("LANG") or request.POST.get("LANG") or "").strip().lower()
    if wanted in RUSSIAN_READERS:
        return "ru"
    return wanted if wanted in dict(settings.LANGUAGES) else translation.get_language()
