"""Leaky buckets shared by every process and machine: a portal's REST rate limit
(docs/bitrix24-protocol.md §5.4) and the API keys' request rates.

A bucket drains `rate` units a second and holds `burst`. `reserve()` adds one unit and says how
long the caller must wait before it may act: zero while the bucket has room, otherwise the time
until the bucket has drained enough. The unit is added at once, so callers queue up in the
order they asked instead of racing each other, and the store's own clock is used (Redis `TIME`,
PostgreSQL `clock_timestamp()`), so machines with skewed clocks still agree. A reservation
that would wait longer than `max_wait` is not made.

Where buckets live:
- Redis when REDIS_URL is set (one Lua script, atomic on the server);
- otherwise a database row per bucket (portals.RateBucket), changed by one INSERT … ON
  CONFLICT DO UPDATE statement on a connection of its own, so a caller's open transaction
  never holds the row locked;
- in this process only on SQLite (single machine, and SQLite has one writer anyway).
"""

import logging
import math
import threading
import time
import weakref
from dataclasses import dataclass
from typing import Any, Protocol

import redis
from django.conf import settings
from django.db import DatabaseError, connections

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Turn:
    granted: bool  # False: nothing was reserved, the wait would exceed max_wait
    wait: float  # seconds until the caller may act (granted), or would have had to wait


class Store(Protocol):
    def reserve(self, key: str, rate: float, burst: float, max_wait: float) -> Turn: ...


def _turn(level: float, rate: float, burst: float, max_wait: float) -> Turn:
    wait = max(0.0, (level - burst) / rate)
    return Turn(wait <= max_wait, wait)


class LocalStore:
    """Buckets in this process (SQLite deployments, and tests of the arithmetic)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._buckets: dict[str, tuple[float, float]] = {}

    def reserve(self, key: str, rate: float, burst: float, max_wait: float) -> Turn:
        with self._lock:
            now = time.monotonic()
            level, at = self._buckets.get(key, (0.0, now))
            level = max(0.0, level - max(0.0, now - at) * rate) + 1
            turn = _turn(level, rate, burst, max_wait)
            if turn.granted:
                self._buckets[key] = (level, now)
            return turn


# KEYS[1] bucket; ARGV rate, burst, max_wait. Returns {granted, wait as a string} (a Lua
# number would reach Python as a truncated integer).
_LUA = """
local rate, burst, max_wait = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local state = redis.call('HMGET', KEYS[1], 'level', 'at')
local level = tonumber(state[1]) or 0
local at = tonumber(state[2]) or now
level = math.max(0, level - math.max(0, now - at) * rate) + 1
local wait = math.max(0, (level - burst) / rate)
if wait > max_wait then
  return {0, tostring(wait)}
end
redis.call('HSET', KEYS[1], 'level', tostring(level), 'at', tostring(now))
redis.call('EXPIRE', KEYS[1], math.ceil(level / rate) + 60)
return {1, tostring(wait)}
"""


# The same for several buckets in one round trip, in order, stopping at the first that would
# wait too long (the ones before it keep their unit). KEYS the buckets; ARGV rate, burst,
# max_wait for each. Returns {granted, wait, granted, wait, ...} for those tried.
_LUA_MANY = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local out = {}
for i, key in ipairs(KEYS) do
  local rate, burst = tonumber(ARGV[3 * i - 2]), tonumber(ARGV[3 * i - 1])
  local max_wait = tonumber(ARGV[3 * i])
  local state = redis.call('HMGET', key, 'level', 'at')
  local level = tonumber(state[1]) or 0
  local at = tonumber(state[2]) or now
  level = math.max(0, level - math.max(0, now - at) * rate) + 1
  local wait = math.max(0, (level - burst) / rate)
  if wait > max_wait then
    table.insert(out, 0)
    table.insert(out, tostring(wait))
    return out
  end
  redis.call('HSET', key, 'level', tostring(level), 'at', tostring(now))
  redis.call('EXPIRE', key, math.ceil(level / rate) + 60)
  table.insert(out, 1)
  table.insert(out, tostring(wait))
end
return out
"""

Ask = tuple[str, float, float, float]  # key, rate, burst, max_wait


class RedisStore:
    prefix = "b24keeper:bucket:"

    def __init__(self, url: str) -> None:
        self.client = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)
        self.script = self.client.register_script(_LUA)
        self.script_many = self.client.register_script(_LUA_MANY)

    def reserve(self, key: str, rate: float, burst: float, max_wait: float) -> Turn:
        granted, wait = self.script(keys=[self.prefix + key], args=[rate, burst, max_wait])
        return Turn(bool(int(granted)), float(wait))

    def reserve_many(self, asks: list[Ask]) -> list[Turn]:
        keys = [self.prefix + key for key, *_ in asks]
        args = [value for _, *values in asks for value in values]
        flat = self.script_many(keys=keys, args=args)
        return [Turn(bool(int(g)), float(w)) for g, w in zip(flat[::2], flat[1::2], strict=True)]


# One statement: drain by the time since the last change, add one, and store it only if the
# wait stays within max_wait. The SET expressions run after the row is locked, so
# clock_timestamp() there is the time of our turn, not of our arrival.
_DRAINED = (
    "GREATEST(0, b.level - GREATEST(0, EXTRACT(EPOCH FROM clock_timestamp() - b.updated_at))"
    " * %(rate)s) + 1"
)
_SQL = f"""
INSERT INTO portals_ratebucket AS b (key, level, updated_at)
VALUES (%(key)s, 1, clock_timestamp())
ON CONFLICT (key) DO UPDATE SET
    level = {_DRAINED},
    updated_at = GREATEST(b.updated_at, clock_timestamp())
WHERE {_DRAINED} - %(burst)s <= %(max_wait)s * %(rate)s
RETURNING level
"""  # noqa: S608  (no user input: the placeholders are parameters)
_PEEK = f"SELECT {_DRAINED} FROM portals_ratebucket AS b WHERE key = %(key)s"  # noqa: S608


class DatabaseStore:
    """A row per bucket in PostgreSQL, on a connection of this thread's own (autocommit)."""

    def __init__(self) -> None:
        self._local = threading.local()
        # Weak: a connection goes (and closes) with its thread.
        self._opened: weakref.WeakSet[Any] = weakref.WeakSet()

    def _connection(self) -> Any:  # a Django DatabaseWrapper
        conn = getattr(self._local, "connection", None)
        if conn is None:
            conn = self._local.connection = self._new_connection()
            self._opened.add(conn)
        return conn

    @staticmethod
    def _new_connection() -> Any:
        """A connection like the app's, without waiting for the disk at each commit: a bucket
        update lost in a database crash costs nothing, and each one would otherwise wait
        for a WAL flush (most of its time)."""
        base = connections["default"]
        settings_dict = {**base.settings_dict}
        options = dict(settings_dict.get("OPTIONS") or {})
        options["options"] = f"{options.get('options', '')} -c synchronous_commit=off".strip()
        settings_dict["OPTIONS"] = options
        return type(base)(settings_dict, base.alias)

    def close(self) -> None:
        """Close every connection this store opened (tests: before the database is dropped)."""
        for conn in list(self._opened):
            conn.inc_thread_sharing()  # it may belong to another (finished) thread
            try:
                conn.close()
            finally:
                conn.dec_thread_sharing()

    def reserve(self, key: str, rate: float, burst: float, max_wait: float) -> Turn:
        params = {"key": key, "rate": rate, "burst": burst, "max_wait": max_wait}
        try:
            return self._reserve(params)
        except DatabaseError:
            # A dropped connection: the next call opens a new one.
            self._connection().close()
            self._local.connection = None
            raise

    def _reserve(self, params: dict) -> Turn:
        with self._connection().cursor() as cursor:
            cursor.execute(_SQL, params)
            row = cursor.fetchone()
            if row is not None:
                return _turn(row[0], params["rate"], params["burst"], math.inf)
            cursor.execute(_PEEK, params)
            level = cursor.fetchone()[0]
        wait = max(0.0, (level - params["burst"]) / params["rate"])
        return Turn(False, wait)


_stores: dict[tuple[str, str], Store] = {}
_stores_lock = threading.Lock()


def store() -> Store:
    """The store for the current settings, one per process (REDIS_URL and the database are
    read when first needed, so tests can change them)."""
    vendor = connections["default"].vendor
    config = (settings.REDIS_URL, vendor)
    with _stores_lock:
        if config not in _stores:
            if settings.REDIS_URL:
                _stores[config] = RedisStore(settings.REDIS_URL)
            elif vendor == "postgresql":
                _stores[config] = DatabaseStore()
            else:
                _stores[config] = LocalStore()
        return _stores[config]


def close() -> None:
    """Close the database stores' own connections."""
    with _stores_lock:
        for chosen in _stores.values():
            if isinstance(chosen, DatabaseStore):
                chosen.close()


def reserve(key: str, rate: float, burst: float, max_wait: float = math.inf) -> Turn:
    """Reserve one unit of bucket `key`; see the module docstring."""
    chosen = store()
    try:
        return chosen.reserve(key, rate, burst, max_wait)
    except redis.RedisError as err:
        # Redis away: keep limiting, per process, rather than stop every REST call.
        log.warning("rate limit: Redis unavailable (%s); limiting per process", type(err).__name__)
        return _fallback.reserve(key, rate, burst, max_wait)


def reserve_many(asks: list[Ask]) -> list[Turn]:
    """reserve() of several buckets, in order, stopping at the first not granted (the turns
    of the ones tried; those granted keep their unit). One round trip on Redis."""
    chosen = store()
    try:
        if isinstance(chosen, RedisStore):
            return chosen.reserve_many(asks)
        return _each(chosen, asks)
    except redis.RedisError as err:
        log.warning("rate limit: Redis unavailable (%s); limiting per process", type(err).__name__)
        return _each(_fallback, asks)


def _each(chosen: Store, asks: list[Ask]) -> list[Turn]:
    turns: list[Turn] = []
    for ask in asks:
        turns.append(chosen.reserve(*ask))
        if not turns[-1].granted:
            break
    return turns


_fallback = LocalStore()
