"""Where a request came from when a TLS proxy stands in front of the service (HTTPS=true)."""

from django.http import HttpRequest


def forwarded_client_ip(request: HttpRequest) -> str | None:
    """The last address in X-Forwarded-For, the peer our proxy saw and appended (nginx:
    `proxy_add_x_forwarded_for`). Addresses before it come from the client and can be forged,
    so the login throttle never trusts them. Without the header: the direct peer."""
    forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "")
    hops = [hop.strip() for hop in forwarded.split(",") if hop.strip()]
    return hops[-1] if hops else request.META.get("REMOTE_ADDR")
