"""manage.py connect_portal --portal P --client-id C --client-secret S --scope crm,user --code X
[--reference token]: the "Add task" form for scripts."""

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.views.decorators.debug import sensitive_variables

from portals.connect.code import ConnectInput, connect_portal
from portals.connect.grants import ConnectError


class Command(BaseCommand):
    help = "Connect a Bitrix24 portal: exchange a 30-second authorization code for tokens."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--portal", required=True, help="acme, acme.bitrix24.com or a URL")
        parser.add_argument("--client-id", required=True)
        parser.add_argument("--client-secret", required=True)
        parser.add_argument("--scope", required=True, help="comma-separated, e.g. crm,user")
        parser.add_argument("--code", required=True, help="the code; it lives 30 seconds")
        parser.add_argument("--reference", default="token", help="name other code uses")
        parser.add_argument("--name", default="", help="display name of the app credentials")
        parser.add_argument("--owner", default="", help="username of the responsible staff user")

    @sensitive_variables()
    def handle(self, *args: object, **options: str) -> None:
        owner_id = _owner_id(options["owner"]) if options["owner"] else None
        data = ConnectInput(
            portal=options["portal"],
            client_id=options["client_id"],
            client_secret=options["client_secret"],
            scope=options["scope"],
            code=options["code"],
            reference=options["reference"],
            app_name=options["name"],
            owner_id=owner_id,
            may_change_app=True,  # whoever runs manage.py on the machine may change the app
        )
        try:
            token = connect_portal(data)
        except ValidationError as err:
            raise CommandError(_describe(err)) from None
        except ConnectError as err:
            where = f"--{err.field.replace('_', '-')}: " if err.field else ""
            raise CommandError(f"{where}{err}") from None
        self.stdout.write(
            self.style.SUCCESS(
                f"Connected {token.portal.domain} as “{token.reference}”; the access token "
                f"expires at {token.expires_at:%Y-%m-%d %H:%M:%S %Z}."
            )
        )


def _owner_id(username: str) -> int:
    user = get_user_model().objects.filter(username=username, is_staff=True).first()
    if user is None:
        raise CommandError(f"--owner: no staff user “{username}”; create one or leave it out.")
    return user.pk


def _describe(err: ValidationError) -> str:
    if not hasattr(err, "error_dict"):
        return " ".join(err.messages)
    return "\n".join(
        f"--{field.replace('_', '-')}: {' '.join(messages)}"
        for field, messages in err.message_dict.items()
    )
