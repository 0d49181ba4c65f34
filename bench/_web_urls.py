"""The app's URLs plus the benchmark's baselines, served by the same Django and gunicorn:

- /bench/json/: Django's simplest JSON view;
- /bench/orm/<reference>/: a JSON view answering from a raw ORM read of the token's row, with
  no key, no rate limit and no expiry check: what the token API does, minus its safeguards.
"""

from django.http import HttpRequest, JsonResponse
from django.urls import include, path


def simplest(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"ok": True})


def orm_read(request: HttpRequest, reference: str) -> JsonResponse:
    from portals.models import Token

    token = Token.objects.select_related("portal").get(reference=reference)
    return JsonResponse(
        {
            "reference": token.reference,
            "access_token": token.access_token,
            "expires_at": token.expires_at.isoformat(),
            "domain": token.portal.domain,
            "client_endpoint": token.client_endpoint,
            "member_id": token.portal.member_id,
        }
    )


urlpatterns = [
    path("bench/json/", simplest),
    path("bench/orm/<str:reference>/", orm_read),
    path("", include("config.urls")),
]
