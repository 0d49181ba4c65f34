"""manage.py refresh_tokens [REFERENCE ...]: refresh the named tokens now, or every token
that is due. Exits non-zero when any refresh failed."""

from django.core.management.base import BaseCommand, CommandError, CommandParser

from portals.errors import OAuthError
from portals.models import RefreshAttempt, Token
from portals.tokens import TokenError, refresh, refresh_token


class Command(BaseCommand):
    help = "Refresh tokens now: the given references, or every token that is due."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("references", nargs="*", metavar="REFERENCE")

    def handle(self, *args: object, references: list[str], **options: object) -> None:
        failures = 0
        for reference in references or self._due_references():
            try:
                if references:
                    token = refresh(reference)
                else:
                    token = refresh_token(
                        Token.objects.select_related("portal", "app").get(reference=reference),
                        RefreshAttempt.Kind.SCHEDULED,
                        wait=False,
                    )
            except (OAuthError, TokenError) as err:
                failures += 1
                self.stderr.write(f"{reference}: {err}")
                continue
            if token is None:
                self.stdout.write(f"{reference}: already being refreshed elsewhere; skipped.")
            else:
                self.stdout.write(f"{reference}: refreshed, expires {token.expires_at:%H:%M:%S}.")
        if failures:
            raise CommandError(f"{failures} token(s) could not be refreshed; see above.")

    def _due_references(self) -> list[str]:
        return list(Token.objects.due().values_list("reference", flat=True))
