"""API keys: made, checked, throttled, noted and revoked here (the admin, the command and the
view call these)."""

import hashlib
import ipaddress
import secrets
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from api.models import ApiKey, split_words
from portals.bitrix import ratelimit
from portals.models import Token

PREFIX = "b24k_"
SHOWN = 12  # characters kept in clear (the prefix plus 7), to tell keys apart
MAX_LENGTH = 200  # a longer Authorization header is not a key of ours
NOTE_EVERY = timedelta(minutes=1)


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
    scopes: str = "token",
    methods: str = "",
) -> tuple[ApiKey, str]:
    """A new key for the tokens `references` (None: every token) with `scopes` ("token",
    "proxy" or "token,proxy") and proxy method patterns `methods`; (row, key). Unknown
    references or bad scopes or patterns are a ValidationError and nothing is created."""
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
        scopes=",".join(split_words(scopes)),
        methods="\n".join(split_words(methods)),
    )
    if rate_per_minute is not None:
        api_key.rate_per_minute = rate_per_minute
    key = assign_new_key(api_key)
    api_key.full_clean(exclude=["key_hash", "prefix"])
    with transaction.atomic():
        api_key.save()
        api_key.tokens.set(tokens)
    return api_key, key


@dataclass(frozen=True)
class KeyInfo:
    """What a request needs to know of a key, as cached: the tokens it may use (by reference
    and by id), its scopes, method patterns, rate and expiry."""

    id: int
    name: str
    all_tokens: bool
    references: frozenset[str]
    token_ids: frozenset[int]
    scopes: frozenset[str]
    methods: tuple[str, ...]
    rate_per_minute: int
    expires_at: datetime | None

    def usable(self, now: datetime) -> bool:
        return self.expires_at is None or self.expires_at > now

    def may_read(self, reference: str) -> bool:
        return self.all_tokens or reference in self.references

    def may_use(self, token_id: int) -> bool:
        return self.all_tokens or token_id in self.token_ids


# digest -> (time.monotonic() when read, the key or None for no usable key). Per process;
# API_KEY_CACHE_SECONDS bounds how long a revocation or a change takes to be seen.
_cache: dict[str, tuple[float, KeyInfo | None]] = {}
_cache_lock = threading.Lock()
CACHE_MAX = 10_000  # keys remembered per process (unknown ones included), then start over


def authenticate(authorization: str) -> KeyInfo | None:
    """The usable key named by an `Authorization: Bearer <key>` header, or None."""
    scheme, _, key = (authorization or "").partition(" ")
    if scheme.lower() != "bearer":
        return None
    return find(key.strip())


def find(key: str) -> KeyInfo | None:
    """The usable key `key` (from the cache for API_KEY_CACHE_SECONDS), or None."""
    if not key.startswith(PREFIX) or len(key) > MAX_LENGTH:
        return None
    hashed, now = digest(key), time.monotonic()
    cached = _cache.get(hashed)
    if cached is None or now - cached[0] >= settings.API_KEY_CACHE_SECONDS:
        cached = (now, _read(hashed))
        with _cache_lock:
            if len(_cache) >= CACHE_MAX:
                _cache.clear()
            _cache[hashed] = cached
    info = cached[1]
    return info if info is not None and info.usable(timezone.now()) else None


def forget_cached() -> None:
    """Drop every cached key and last-use note (this process): keys.revoke() does it."""
    with _cache_lock:
        _cache.clear()
        _noted.clear()


def _read(hashed: str) -> KeyInfo | None:
    api_key = ApiKey.objects.usable().filter(key_hash=hashed).first()
    if api_key is None:
        return None
    tokens = list(api_key.tokens.values_list("pk", "reference")) if not api_key.all_tokens else []
    return KeyInfo(
        id=api_key.pk,
        name=api_key.name,
        all_tokens=api_key.all_tokens,
        references=frozenset(reference for _, reference in tokens),
        token_ids=frozenset(pk for pk, _ in tokens),
        scopes=frozenset(split_words(api_key.scopes)),
        methods=tuple(split_words(api_key.methods)),
        rate_per_minute=api_key.rate_per_minute,
        expires_at=api_key.expires_at,
    )


def throttle(api_key: KeyInfo) -> ratelimit.Turn:
    """One request's turn under the key's rate (shared by every web process); never waits."""
    return ratelimit.reserve(*throttle_ask(api_key))


def throttle_ask(api_key: KeyInfo) -> ratelimit.Ask:
    """throttle() as a bucket to reserve together with others (ratelimit.reserve_many)."""
    rate = api_key.rate_per_minute / 60
    return (f"apikey:{api_key.id}", rate, float(api_key.rate_per_minute), 0.0)


_noted: dict[int, datetime] = {}  # key id -> when this process last wrote its use


def note_use(api_key: KeyInfo, address: str | None) -> None:
    """Record when and from where the key was last used, at most once a minute per key (and
    per process: the UPDATE below changes nothing when another process wrote it lately)."""
    now = timezone.now()
    last = _noted.get(api_key.id)
    if last and now - last < NOTE_EVERY:
        return
    _noted[api_key.id] = now
    try:
        address = str(ipaddress.ip_address(address or ""))
    except ValueError:
        address = None
    ApiKey.objects.filter(pk=api_key.id).filter(
        Q(last_used_at__isnull=True) | Q(last_used_at__lt=now - NOTE_EVERY)
    ).update(last_used_at=now, last_used_from=address)


def revoke(key_ids: Iterable[int]) -> list[ApiKey]:
    """Revoke the keys not yet revoked; returns them."""
    with transaction.atomic():
        rows = ApiKey.objects.select_for_update().filter(pk__in=list(key_ids), revoked_at=None)
        keys = list(rows)
        ApiKey.objects.filter(pk__in=[k.pk for k in keys]).update(revoked_at=timezone.now())
    forget_cached()  # this process at once; the others within API_KEY_CACHE_SECONDS
    return keys
