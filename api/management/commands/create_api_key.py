"""python manage.py create_api_key --name NAME --reference REF [--reference REF ...]
    [--scope token,proxy] [--methods "crm.lead.*,user.current"]

Prints the new key once, on stdout alone (so a script can capture it); what it reads goes to
stderr. Without --reference the key reads every token; without --scope it reads tokens
(`token`); `proxy` lets it call Bitrix24 through SITE_URL/rest/<token id>/<key>/<method>.
"""

from datetime import timedelta
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from api import keys


class Command(BaseCommand):
    help = "Create an API key for GET /api/tokens/<reference>/ and print it once."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--name", required=True, help="Who uses the key.")
        parser.add_argument(
            "--reference",
            action="append",
            dest="references",
            metavar="REF",
            help="A token the key may read; repeat for more. Without it: every token.",
        )
        parser.add_argument(
            "--expires-in-days", type=int, help="The key stops working after this many days."
        )
        parser.add_argument(
            "--rate-per-minute", type=int, help="Requests a minute the key may make (600)."
        )
        parser.add_argument(
            "--scope",
            default="token",
            help="token (read tokens), proxy (call through the REST proxy) or token,proxy.",
        )
        parser.add_argument(
            "--methods",
            default="",
            metavar="PATTERNS",
            help="Proxy: the methods allowed, comma-separated patterns (crm.lead.*,user.current).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        days = options["expires_in_days"]
        references: list[str] | None = options["references"]
        if days is not None and days < 1:
            raise CommandError("--expires-in-days must be 1 or more.")
        try:
            api_key, key = keys.create_key(
                str(options["name"]),
                references,
                expires_at=timezone.now() + timedelta(days=days) if days else None,
                rate_per_minute=options["rate_per_minute"],
                scopes=str(options["scope"]),
                methods=str(options["methods"]),
            )
        except ValidationError as err:
            raise CommandError(" ".join(err.messages)) from None
        reads = ", ".join(references) if references is not None else "every token"
        self.stderr.write(
            f"API key “{api_key.name}” ({api_key.prefix}…) reads {reads} (scope "
            f"{api_key.scopes}). It is shown once, below: store it now."
        )
        self.stdout.write(key)
