"""manage.py reencrypt_secrets: rewrite every stored secret with the newest key in
ENCRYPTION_KEYS, so older keys can then be removed."""

from django.apps import apps
from django.core.management.base import BaseCommand

from encryption.rotation import reencrypt_model
from portals import journal


class Command(BaseCommand):
    help = "Re-encrypt every secret with the first key in ENCRYPTION_KEYS."

    def handle(self, *args: object, **options: object) -> None:
        total = 0
        for model in apps.get_models():
            count = reencrypt_model(model)
            if count:
                self.stdout.write(f"{model._meta.label}: {count} value(s) re-encrypted")
            total += count
        # Pairs waiting in this machine's local journal are secrets too (run this on every
        # machine that runs a worker, or let their journals drain first).
        if journaled := journal.reencrypt():
            self.stdout.write(f"local journal: {journaled} pair(s) re-encrypted")
        total += journaled
        self.stdout.write(self.style.SUCCESS(f"Done: {total} value(s) now use the newest key."))
