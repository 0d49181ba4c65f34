"""Shared fixtures: the wire-level fake Bitrix24 server and a connected token."""

from datetime import timedelta

import pytest
from django.utils import timezone

from portals.connect.code import ConnectInput, connect_portal
from tests import brokers
from tests.brokers import BROKERS
from tests.fakes.bitrix import FakeBitrix

CLIENT_ID = "local.6a1b2c3d4e5f60.48151623"
CLIENT_SECRET = "Zx9QeVwPl3sT8mNc2RbK7uYhG4dFa1Jo6iLk5ErTy0WqA3sDf8"
PORTAL = "acme.bitrix24.com"


@pytest.fixture(autouse=True)
def journal_dir(settings, tmp_path):
    """Each test's own local journal (VAR_DIR/journal in production)."""
    settings.TOKEN_JOURNAL_DIR = tmp_path / "var" / "journal"
    return settings.TOKEN_JOURNAL_DIR


@pytest.fixture(autouse=True)
def default_language():
    """Each test starts and ends in the default language: a test that renders a page in Russian
    (the test client activates the request's language in this thread) leaves none behind."""
    from django.utils import translation

    translation.deactivate()
    yield
    translation.deactivate()


@pytest.fixture(autouse=True)
def close_rate_limit_connections():
    """The rate limiter's database store keeps a connection of its own (portals.bitrix.ratelimit);
    close it after each test so the test database can be dropped at the end."""
    yield
    from portals.bitrix import ratelimit

    ratelimit.close()


def serve_fake(settings, fake_class: type[FakeBitrix] = FakeBitrix) -> FakeBitrix:
    """Start a fake authorization server (or a variant of it) and point the settings at it."""
    fake = fake_class().start()
    fake.register_app(CLIENT_ID, CLIENT_SECRET, scope="crm,user")
    settings.BITRIX_OAUTH_SERVER = fake.base_url
    settings.BITRIX_AUTH_SERVERS = [fake.base_url]
    settings.BITRIX_ALLOW_HTTP = True
    return fake


@pytest.fixture
def fake_bitrix(settings):
    """A fake authorization server on 127.0.0.1, reached through the real settings."""
    fake = serve_fake(settings)
    yield fake
    fake.stop()


def local_host(fake: FakeBitrix) -> str:
    """The fake's own port under the name localhost: a portal whose REST API the fake answers,
    reached through the production code path."""
    return f"localhost:{fake.server_host.rsplit(':', 1)[1]}"


@pytest.fixture
def portal_host(fake_bitrix) -> str:
    """local_host of the fake_bitrix: the portal the REST client and the REST proxy reach."""
    return local_host(fake_bitrix)


@pytest.fixture
def rest_token(fake_bitrix, portal_host):
    """A token connected on portal_host, whose REST calls the fake answers."""
    return connect(fake_bitrix, portal=portal_host)


def connect(fake: FakeBitrix, reference: str = "token", portal: str = PORTAL, **overrides):
    code = fake.issue_code(CLIENT_ID, portal)
    data = {
        "portal": portal,
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "scope": "crm,user",
        "code": code,
        "reference": reference,
        **overrides,
    }
    return connect_portal(ConnectInput(**data))


def run_due(token, expires_in: timedelta | None = None) -> str:
    """One scheduled refresh attempt, now: make the token due (optionally set its expiry) and
    run the refresh task's body."""
    from portals.models import Token
    from portals.tokens.sweep import refresh_if_due

    changes = {"next_refresh_at": timezone.now() - timedelta(seconds=1)}
    if expires_in is not None:
        changes["expires_at"] = timezone.now() + expires_in
    Token.objects.filter(pk=token.pk).update(**changes)
    return refresh_if_due(token.pk)


@pytest.fixture
def token(fake_bitrix, db):
    """A token connected through the real code exchange."""
    return connect(fake_bitrix)


# The Redis database the tests use as a broker: CELERY_BROKER_URL (tests/settings.py defaults it
# to db 15), so two checkouts can run their suites at once on separate databases.
BROKER_URL = brokers.REDIS_URL


@pytest.fixture
def broker_url():
    """A real Redis broker, emptied before and after the test."""
    with brokers.redis_broker() as url:
        yield url


@pytest.fixture(params=BROKERS)
def broker(request):
    """A broker of this test's own, once on Redis and once on RabbitMQ (tests/brokers.py), for
    the tests that run real workers and beats. This process publishes to it too."""
    with brokers.broker(request.param) as url:
        yield url


@pytest.fixture
def sweep_schedule(transactional_db):
    """The data migration's sweep task, made to run every second (tests flush the tables
    between transactional tests, so it is re-created here the same way)."""
    from django_celery_beat.models import IntervalSchedule, PeriodicTask

    from portals.beat import SWEEP_TASK, ensure_sweep_schedule

    ensure_sweep_schedule(PeriodicTask, IntervalSchedule, 1)
    every_second, _ = IntervalSchedule.objects.get_or_create(every=1, period="seconds")
    PeriodicTask.objects.filter(task=SWEEP_TASK).update(interval=every_second)
    return PeriodicTask.objects.get(task=SWEEP_TASK)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    """Keep each phase's report on the test, so fixtures can tell that it failed."""
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


@pytest.fixture
def celery(request, tmp_path, broker, fake_bitrix):
    from tests.processes import CeleryProcesses

    with CeleryProcesses(tmp_path, broker) as procs:
        yield procs
        report = getattr(request.node, "report_call", None)
        if report is not None and report.failed:
            print(procs.logs())  # shown with the failure, under "Captured stdout teardown"
