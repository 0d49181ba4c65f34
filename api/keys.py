"""API keys: made, checked, throttled, noted and revoked here (the admin, the command and the
view call these)."""

import hashlib
import ipaddress
import secrets
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, cast

from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from api.models import ApiKey
from portals.bitrix import ratelimit
from portals.models import Token

PREFIX = "b24k_"
SHOWN = 12  # characters kept in clear (the prefix plus 7), to tell keys apart
MAX_LENGTH = 200  # a longer Authorization header is not a key of ours
NOTE_EVERY = timedelta(minutes=1)

if TYPE_CHECKING:  # django_stubs_ext is a type-checking package, not needed to run
    from typing import TypedDict

    from django_stubs_ext import WithAnnotations

    class _Access(TypedDict):
        may_read: bool

    # A key found by authenticate(), with what its query adds.
    CheckedKey = WithAnnotations[ApiKey, _Access]


def new_key() -> str:
    """b24k_ and 43 URL-safe characters: 256 random bits."""
    return PREFIX + secrets.token_urlsafe(32)


def digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def assign_new_key(api_key: ApiKey) -> str:
    """Give `api_key` a fresh key (not saved yet); the key itself is returned, never stored."""
    key = new_key()
    api_key.prefix, api_key.key_hash = key[:SHOWN], digest(key)
    return key


def create_key(
    name: str,
    references: Iterable[str] | None = None,
    *,
    created_by: User | None = None,
    expires_at: datetime | None = None,
    rate_per_minute: int | None = None,
) -> tuple[ApiKey, str]:
    """A new key for the tokens `references` (None: every token); (row, key). Unknown
    references are a ValidationError and nothing is created."""
    if not (name or "").strip():
        raise ValidationError("Give the key a name that says who uses it (--name).")
    tokens: list[Token] = []
    if references is not None:
        wanted = list(dict.fromkeys(references))
        found = {t.reference: t for t in Token.objects.filter(reference__in=wanted)}
        if missing := [ref for ref in wanted if ref not in found]:
            raise ValidationError(
                f"No token with reference {', '.join(missing)}: check the reference "
                "(Tokens in the admin lists them). No key was created."
            )
        tokens = [found[ref] for ref in wanted]
    api_key = ApiKey(
        name=name.strip(),
        all_tokens=references is None,
        expires_at=expires_at,
        created_by=created_by,
    )
    if rate_per_minute is not None:
        api_key.rate_per_minute = rate_per_minute
    key = assign_new_key(api_key)
    api_key.full_clean(exclude=["key_hash", "prefix"])
    with transaction.atomic():
        api_key.save()
        api_key.tokens.set(tokens)
    return api_key, key


# The key and whether it may read the reference, in one query. Written as SQL because this
# runs on every request, and compiling the same query through the ORM cost more than running
# it (bench/token_access.py).
_KEY_SQL = """
SELECT k.*, (k.all_tokens OR EXISTS (
    SELECT 1 FROM {through} b JOIN {token} t ON t.id = b.token_id
    WHERE b.apikey_id = k.id AND t.reference = %s)) AS may_read
FROM {key} k
WHERE k.key_hash = %s AND k.revoked_at IS NULL AND (k.expires_at IS NULL OR k.expires_at > %s)
"""


def authenticate(authorization: str, reference: str = "") -> "CheckedKey | None":
    """The usable key named by an `Authorization: Bearer <key>` header, or None; its
    `may_read` says whether it may read the token `reference`."""
    scheme, _, key = (authorization or "").partition(" ")
    key = key.strip()
    if scheme.lower() != "bearer" or not key.startswith(PREFIX) or len(key) > MAX_LENGTH:
        return None
    sql = _KEY_SQL.format(
        key=ApiKey._meta.db_table,
        through=ApiKey.tokens.through._meta.db_table,
        token=Token._meta.db_table,
    )
    found = list(ApiKey.objects.raw(sql, [reference, digest(key), timezone.now()]))
    # The ORM cannot see the column the SQL adds; the cast names it.
    return cast("CheckedKey", found[0]) if found else None


def throttle(api_key: ApiKey) -> ratelimit.Turn:
    """One request's turn under the key's rate (shared by every web process); never waits."""
    rate = api_key.rate_per_minute / 60
    return ratelimit.reserve(f"apikey:{api_key.pk}", rate, api_key.rate_per_minute, max_wait=0)


def note_use(api_key: ApiKey, address: str | None) -> None:
    """Record when and from where the key was last used, at most once a minute per key."""
    now = timezone.now()
    if api_key.last_used_at and now - api_key.last_used_at < NOTE_EVERY:
        return
    try:
        address = str(ipaddress.ip_address(address or ""))
    except ValueError:
        address = None
    ApiKey.objects.filter(pk=api_key.pk).filter(
        Q(last_used_at__isnull=True) | Q(last_used_at__lt=now - NOTE_EVERY)
    ).update(last_used_at=now, last_used_from=address)


def revoke(key_ids: Iterable[int]) -> list[ApiKey]:
    """Revoke the keys not yet revoked; returns them."""
    with transaction.atomic():
        rows = ApiKey.objects.select_for_update().filter(pk__in=list(key_ids), revoked_at=None)
        keys = list(rows)
        ApiKey.objects.filter(pk__in=[k.pk for k in keys]).update(revoked_at=timezone.now())
    return keys
