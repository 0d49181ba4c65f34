"""The local journal: token pairs Bitrix24 has issued that the database may not have yet.

Once Bitrix24 answers a refresh, the refresh token we sent is dead (strict rotation,
docs/bitrix24-protocol.md §3.3): the new pair is the only way back into the portal. If the
database is unreachable at that moment (a failover, a restart, a terminated connection), the
pair must survive until it is. So before anything else it is written here, encrypted with
ENCRYPTION_KEYS, one file per pair under TOKEN_JOURNAL_DIR (VAR_DIR/journal), fsynced and
renamed into place, and removed once the database holds it.

Each entry remembers the token `version` the refresh started from. Replaying applies it only
if the token is still at that version (nothing newer was stored meanwhile); see
portals.tokens.pairs.restore_pair. This module only reads and writes files.
"""

import json
import logging
import os
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from django.conf import settings
from django.views.decorators.debug import sensitive_variables

from encryption import crypto
from portals.bitrix.oauth import TokenGrant

log = logging.getLogger(__name__)
SUFFIX = ".pair"


@dataclass(frozen=True)
class Entry:
    path: Path
    token_id: int
    from_version: int

    @sensitive_variables()
    def read(self) -> TokenGrant:
        """The stored pair; DecryptionError if ENCRYPTION_KEYS lacks its key."""
        fields = json.loads(crypto.decrypt(self.path.read_text()))
        fields["expires_at"] = datetime.fromtimestamp(fields["expires_at"], tz=UTC)
        return TokenGrant(**fields)

    def exists(self) -> bool:
        return self.path.exists()

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)


def folder() -> Path:
    path = Path(settings.TOKEN_JOURNAL_DIR)
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path


@sensitive_variables()
def write(token_id: int, from_version: int, grant: TokenGrant) -> Entry:
    """Durably record `grant`: when this returns, a crash or power cut cannot lose it."""
    fields = {
        "access_token": grant.access_token,
        "refresh_token": grant.refresh_token,
        "expires_at": grant.expires_at.timestamp(),
        "scope": grant.scope,
        "server_endpoint": grant.server_endpoint,
        "client_endpoint": grant.client_endpoint,
        "member_id": grant.member_id,
        "user_id": grant.user_id,
        "domain": grant.domain,
    }
    directory = folder()
    name = f"{token_id}.{from_version}.{uuid.uuid4().hex}{SUFFIX}"
    temporary = directory / f".{name}.tmp"  # never read by entries(): no SUFFIX at the end
    with open(temporary, "x", encoding="ascii") as file:
        os.fchmod(file.fileno(), 0o600)
        file.write(crypto.encrypt(json.dumps(fields)))
        file.flush()
        os.fsync(file.fileno())
    final = directory / name
    os.replace(temporary, final)
    _fsync_directory(directory)
    return Entry(final, token_id, from_version)


def _fsync_directory(directory: Path) -> None:
    # The rename is durable only once the directory itself is on disk.
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def entries(token_id: int | None = None, *, settled_for: float = 0.0) -> Iterator[Entry]:
    """Pending entries, oldest first; only `token_id`'s when given; with `settled_for`, only
    those written at least that many seconds ago. Cheap when empty."""
    prefix = f"{token_id}." if token_id is not None else ""
    try:
        scanned = [e for e in os.scandir(folder()) if e.name.endswith(SUFFIX)]
    except FileNotFoundError:
        return
    written_before = (time.time() - settled_for) * 1e9  # this machine's files, its own clock
    for item in sorted(scanned, key=_age):
        if not item.name.startswith(prefix) or _age(item) > written_before:
            continue
        parts = item.name.split(".")
        try:
            yield Entry(Path(item.path), int(parts[0]), int(parts[1]))
        except (ValueError, IndexError):
            log.warning("journal: ignoring a file that is not an entry: %s", item.name)


def _age(item: os.DirEntry) -> int:
    try:
        return item.stat().st_mtime_ns
    except FileNotFoundError:  # replayed by another process meanwhile
        return 0


@sensitive_variables()
def reencrypt() -> int:
    """Rewrite every entry with the newest key (key rotation); returns how many.

    An entry replayed meanwhile may come back from the rename; harmless, since a replay of a
    pair whose version has moved on only removes it."""
    count = 0
    for entry in entries():
        try:
            rotated = crypto.rotate(entry.path.read_text())
        except FileNotFoundError:
            continue  # replayed meanwhile
        temporary = entry.path.with_name(f".{entry.path.name}.tmp")
        with open(temporary, "w", encoding="ascii") as file:
            os.fchmod(file.fileno(), 0o600)
            file.write(rotated)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, entry.path)
        count += 1
    if count:
        _fsync_directory(folder())
    return count
