"""manage.py reencrypt_secrets: rewrite every stored secret with the newest key in
ENCRYPTION_KEYS, so older keys can then be removed (README: key rotation drill).

Safe while workers refresh: values are rewritten in batches with a compare-and-set on the
ciphertext (encryption.rotation), so a token rotated mid-run is never overwritten. It then
checks that nothing is left under an older key, and goes over the tables again (up to
--passes times) if a process still running with the old key list wrote some meanwhile.
Exits non-zero, saying why, when the old key cannot go yet.
"""

from django.core.management.base import BaseCommand, CommandError, CommandParser

from encryption import rotation
from portals.tokens import journal


class Command(BaseCommand):
    help = "Re-encrypt every secret with the first key in ENCRYPTION_KEYS."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--batch-size", type=int, default=rotation.BATCH)
        parser.add_argument("--passes", type=int, default=3, help="Passes at most (default 3).")

    def handle(self, *args: object, batch_size: int, passes: int, **options: object) -> None:
        total = rotation.Rotation()
        for number in range(1, passes + 1):
            total.add(self._pass(number, batch_size))
            stale = rotation.stale_values()
            if not stale or set(stale.items()) <= set(total.unreadable.items()):
                break
        # Pairs waiting in this machine's local journal are secrets too (run this on every
        # machine that runs a worker, or restart those workers first: they replay their
        # journal at start).
        if journaled := journal.reencrypt():
            self.stdout.write(f"local journal: {journaled} pair(s) re-encrypted")
        self._finish(total, stale, journaled)

    def _pass(self, number: int, batch_size: int) -> rotation.Rotation:
        result = rotation.Rotation()
        for model in rotation.encrypted_models():
            done = rotation.reencrypt_model(model, batch=batch_size)
            if done.rewritten or done.changed_meanwhile:
                self.stdout.write(
                    f"pass {number}: {model._meta.label}: {done.rewritten} value(s) "
                    f"re-encrypted, {done.changed_meanwhile} changed meanwhile by a refresh"
                )
            result.add(done)
        return result

    def _finish(self, total: rotation.Rotation, stale: dict[str, int], journaled: int) -> None:
        unreadable = ", ".join(f"{label}: {n}" for label, n in total.unreadable.items())
        if unreadable:
            raise CommandError(
                f"Some stored secrets cannot be decrypted with any key in ENCRYPTION_KEYS "
                f"({unreadable}). Put back the key they were written with and run this again."
            )
        if stale:
            left = ", ".join(f"{label}: {n}" for label, n in stale.items())
            raise CommandError(
                f"Values are still under an older key ({left}): a process still runs with the "
                "old ENCRYPTION_KEYS. Restart web, workers and beat with the new key first, "
                "then run this again. Keep the old key until this succeeds."
            )
        done = total.rewritten + total.current + journaled
        self.stdout.write(
            self.style.SUCCESS(
                f"Done: {done} value(s) now use the newest key "
                f"({total.rewritten} re-encrypted now). The old key may be removed."
            )
        )
