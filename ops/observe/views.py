"""GET /health/ and GET /metrics: thin views over ops.observe.health and ops.observe.exposition."""

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe
from prometheus_client import CONTENT_TYPE_LATEST

from ops.observe import access, exposition, health


@never_cache
@require_safe
def health_view(request: HttpRequest) -> JsonResponse:
    """Anyone sees the status and each check's ok/failing; callers allowed to read metrics
    also see what each check found and how long it took."""
    results = health.run_checks()
    status = health.overall(results)
    # A logged-in user is looked up in the database: only ask it when it answers.
    details = access.has_bearer(request) or (results["database"].ok and access.may_read(request))
    checks = {
        name: (
            {"status": _word(r.ok), "detail": r.detail, "seconds": r.seconds}
            if details
            else {"status": _word(r.ok)}
        )
        for name, r in results.items()
    }
    return JsonResponse(
        {"status": status, "checks": checks}, status=503 if status == "down" else 200
    )


def _word(ok: bool) -> str:
    return "ok" if ok else "failing"


@never_cache
@require_safe
def metrics_view(request: HttpRequest) -> HttpResponse:
    if not access.may_read(request):
        if request.user.is_authenticated:
            return HttpResponse("You need the permission to view tokens.\n", status=403)
        response = HttpResponse(
            "Send Authorization: Bearer <METRICS_TOKEN>, or log in as staff.\n", status=401
        )
        response["WWW-Authenticate"] = 'Bearer realm="b24keeper"'
        return response
    return HttpResponse(exposition.render(), content_type=CONTENT_TYPE_LATEST)
