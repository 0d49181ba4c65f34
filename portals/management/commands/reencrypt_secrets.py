"""manage.py reencrypt_secrets: rewrite every stored secret with the newest key in
ENCRYPTION_KEYS, so older keys can then be removed."""

from django.apps import apps
from django.core.management.base import BaseCommand

from portals.secrets import reencrypt_model


class Command(BaseCommand):
    help = "Re-encrypt every secret with the first key in ENCRYPTION_KEYS."

    def handle(self, *args: object, **options: object) -> None:
        total = 0
        for model in apps.get_models():
            count = reencrypt_model(model)
            if count:
                self.stdout.write(f"{model._meta.label}: {count} value(s) re-encrypted")
            total += count
        self.stdout.write(self.style.SUCCESS(f"Done: {total} value(s) now use the newest key."))
