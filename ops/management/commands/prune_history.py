"""manage.py prune_history: what the daily periodic task does, now."""

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser

from ops.observe import retention


class Command(BaseCommand):
    help = (
        "Delete refresh attempts and deliveries older than HISTORY_RETENTION_DAYS (each "
        "token's latest attempt and everything about open incidents stay)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--batch-size", type=int, default=retention.BATCH, help="Rows per DELETE."
        )

    def handle(self, *args: object, batch_size: int, **options: object) -> None:
        pruned = retention.prune(batch=batch_size)
        self.stdout.write(
            f"Deleted {pruned.attempts} refresh attempt(s) and {pruned.deliveries} "
            f"deliver(ies) older than {settings.HISTORY_RETENTION_DAYS} days in "
            f"{pruned.batches} batch(es); the longest took {pruned.longest_batch_seconds:.3f} s."
        )
