"""manage.py refresh_tokens [REFERENCE ...]: refresh the named tokens now, or every token
that is due. Exits non-zero when any refresh failed."""

from django.core.management.base import BaseCommand, CommandError, CommandParser

from portals.bitrix.errors import OAuthError
from portals.models import Token
from portals.tokens import TokenError, refresh, sweep


class Command(BaseCommand):
    help = "Refresh tokens now: the given references, or every token that is due."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("references", nargs="*", metavar="REFERENCE")

    def handle(self, *args: object, references: list[str], **options: object) -> None:
        failures = self._named(references) if references else self._due()
        if failures:
            raise CommandError(f"{failures} token(s) could not be refreshed; see above.")

    def _named(self, references: list[str]) -> int:
        failures = 0
        for reference in references:
            try:
                token = refresh(reference)
            except (OAuthError, TokenError) as err:
                failures += 1
                self.stderr.write(f"{reference}: {err}")
            else:
                self.stdout.write(f"{reference}: refreshed, expires {token.expires_at:%H:%M:%S}.")
        return failures

    def _due(self) -> int:
        """Every due token, claimed exactly as the periodic sweep claims them, so this never
        races a sweep or a worker over the same token."""
        failures = 0
        for token_id in sweep.claim_due_tokens():
            outcome = sweep.refresh_if_due(token_id)
            reference = Token.objects.values_list("reference", flat=True).get(pk=token_id)
            self.stdout.write(f"{reference}: {outcome}")
            failures += outcome == "failed"
        return failures
