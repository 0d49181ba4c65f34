"""Upgrades keep everything: a database of the last release, upgraded in place (new code,
`migrate`, the same database and keys), keeps every token working, every secret readable and
every setting; the migrations since are reversible; and the models need no migration that is
not written."""

import json
from io import StringIO

import pytest
from django.core.management import call_command
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from api import keys
from api.models import ApiKey
from notifications.models import Channel
from portals.beat import ensure_sweep_schedule
from portals.bitrix.oauth import BitrixOAuthClient
from portals.models import Token, TokenStatus
from portals.tokens import refresh
from tests.conftest import CLIENT_ID, CLIENT_SECRET

pytestmark = pytest.mark.django_db(transaction=True)

# The leaf migration of each app in the last release (main before the inbound-trust and rooms
# issues). A later migration must upgrade a database left at these.
LAST_RELEASE = [
    ("portals", "0010_portal_rate_limit"),
    ("notifications", "0007_translated_labels"),
    ("api", "0003_translatable_labels"),
    ("ops", "0002_prune_history_daily"),
]
PORTAL = "acme.bitrix24.com"
TELEGRAM = {"bot_token": "123456:ABCdefGhIJKlmNoPQRsTUVwxyZ"}


def migrate_to(targets: list[tuple[str, str]]) -> MigrationExecutor:
    executor = MigrationExecutor(connection)
    executor.migrate(targets)
    executor.loader.build_graph()
    return executor


def latest() -> list[tuple[str, str]]:
    executor = MigrationExecutor(connection)
    return executor.loader.graph.leaf_nodes()


def old_release_rows(apps, fake) -> str:
    """What a deployment of the last release holds: an app, a connected token (a live pair of
    the fake's), a channel with credentials, an edited sweep interval, an API key. Written
    through that release's models (encrypted with today's keys); returns the API key."""
    grant = BitrixOAuthClient(server=fake.base_url).exchange_code(
        CLIENT_ID, CLIENT_SECRET, fake.issue_code(CLIENT_ID, PORTAL)
    )
    app = apps.get_model("portals", "AppCredentials").objects.create(
        name="CRM", client_id=CLIENT_ID, client_secret=CLIENT_SECRET, scope="crm,user"
    )
    portal = apps.get_model("portals", "Portal").objects.create(
        domain=PORTAL, member_id=grant.member_id, auth_server=fake.base_url
    )
    apps.get_model("portals", "Token").objects.create(
        portal=portal, app=app, reference="crm", status="active", version=3,
        access_token=grant.access_token, refresh_token=grant.refresh_token,
        expires_at=grant.expires_at, server_endpoint=grant.server_endpoint,
        client_endpoint=grant.client_endpoint, scope="crm,user",
    )  # fmt: skip
    apps.get_model("notifications", "Channel").objects.create(
        kind="telegram", name="On call", destination="-100123", enabled=True,
        credentials=json.dumps(TELEGRAM),
    )  # fmt: skip
    interval = apps.get_model("django_celery_beat", "IntervalSchedule")
    periodic = apps.get_model("django_celery_beat", "PeriodicTask")
    # Made by that release's data migration (a test run flushes tables between tests).
    ensure_sweep_schedule(periodic, interval, 60)
    every_two, _ = interval.objects.get_or_create(every=120, period="seconds")
    sweep = periodic.objects.get(task="portals.tasks.sweep_due_tokens")
    sweep.interval = every_two
    sweep.save()
    key = keys.new_key()
    apps.get_model("api", "ApiKey").objects.create(
        name="billing", prefix=key[: keys.SHOWN], key_hash=keys.digest(key), all_tokens=True
    )
    return key


def test_the_models_need_no_migration_that_is_not_written():
    out = StringIO()
    call_command("makemigrations", "--check", "--dry-run", stdout=out)  # SystemExit otherwise
    assert "No changes detected" in out.getvalue()


def test_an_upgrade_from_the_last_release_keeps_tokens_secrets_and_settings(fake_bitrix):
    executor = migrate_to(LAST_RELEASE)
    old_apps = executor.loader.project_state(LAST_RELEASE).apps
    key = old_release_rows(old_apps, fake_bitrix)

    migrate_to(latest())

    token = Token.objects.get(reference="crm")
    assert token.status == TokenStatus.ACTIVE and token.version == 3
    assert token.app.client_secret == CLIENT_SECRET
    refresh("crm")  # the stored refresh token is the chain's head: Bitrix takes it
    assert Token.objects.get(reference="crm").version == 4
    assert Channel.objects.get().get_credentials() == TELEGRAM
    from django_celery_beat.models import PeriodicTask

    sweep = PeriodicTask.objects.get(task="portals.tasks.sweep_due_tokens")
    assert sweep.interval is not None and sweep.interval.every == 120  # the edit is kept
    assert PeriodicTask.objects.filter(task="portals.tasks.check_event_bindings").exists()
    checked = keys.authenticate(f"Bearer {key}")
    assert checked is not None and checked.may_read("crm")
    assert checked.scopes == {"token"}  # a key from before scopes keeps reading tokens
    assert ApiKey.objects.get().name == "billing"


def test_the_migrations_since_the_last_release_are_reversible(fake_bitrix):
    migrate_to(latest())
    migrate_to(LAST_RELEASE)
    from django_celery_beat.models import PeriodicTask

    assert not PeriodicTask.objects.filter(task="portals.tasks.check_event_bindings").exists()
    migrate_to(latest())
    assert PeriodicTask.objects.filter(task="portals.tasks.check_event_bindings").exists()
