"""Who may read the metrics and the health details: a caller that sends
`Authorization: Bearer <METRICS_TOKEN>`, or a logged-in user with the view permission.

With METRICS_TOKEN empty only such users may (never a bearer, whatever it sends).
"""

import hmac

from django.conf import settings
from django.http import HttpRequest

# The permission that lets staff see tokens in the admin (the "b24keeper viewers" group has it).
VIEW_PERMISSION = "portals.view_token"


def has_bearer(request: HttpRequest) -> bool:
    expected = settings.METRICS_TOKEN
    if not expected:
        return False
    scheme, _, offered = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not offered.strip():
        return False
    return hmac.compare_digest(offered.strip().encode(), expected.encode())


def may_read(request: HttpRequest) -> bool:
    """May this caller read the metrics and the health details?"""
    if has_bearer(request):
        return True
    user = request.user
    return user.is_authenticated and user.is_active and user.has_perm(VIEW_PERMISSION)
