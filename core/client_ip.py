"""Which address a request came from, for the admin login throttle (django-axes) and an API
key's `last_used_from`.

TRUSTED_PROXY_COUNT says how many proxies of ours stand in front of the service. Each appends
the address it saw to X-Forwarded-For (nginx: `proxy_add_x_forwarded_for`), and the last one is
REMOTE_ADDR; everything further left came from the client and can be forged. So the client is
the address TRUSTED_PROXY_COUNT places from the right of X-Forwarded-For + REMOTE_ADDR, and with
0 (the default) the header is ignored altogether.
"""

import ipaddress

from django.conf import settings
from django.http import HttpRequest


def forwarded_client_ip(request: HttpRequest) -> str | None:
    """The client's address: REMOTE_ADDR with no trusted proxy, with fewer hops than trusted
    proxies, or when the hop found is not an IP address; else that hop."""
    remote = request.META.get("REMOTE_ADDR")
    trusted = settings.TRUSTED_PROXY_COUNT
    if trusted <= 0:
        return remote
    forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "")
    hops = [hop.strip() for hop in forwarded.split(",")] if forwarded else []
    chain = [*hops, remote or ""]
    if len(chain) <= trusted:
        return remote
    candidate = chain[-1 - trusted]
    try:
        return str(ipaddress.ip_address(candidate))
    except ValueError:
        return remote
