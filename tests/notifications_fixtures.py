"""Fixtures of the notifications tests: the providers' fakes, fast settings, a token owner,
and Celery workers that send through the fakes. A test module loads them with
`pytest_plugins = ["tests.notifications_fixtures"]`; plain helpers are in
tests/notifications_helpers.py.
"""

import os
import signal
from collections.abc import Iterator
from types import SimpleNamespace

import pytest
from django.contrib.auth import get_user_model

from tests.fakes.smtp import FakeSmtp
from tests.notifications_helpers import (
    EMAIL,
    NOTIFY,
    PROVIDERS,
    secrets,
    start_fakes,
    worker_env,
)
from tests.processes import CeleryProcesses, child_pids


@pytest.fixture
def notify(settings) -> dict[str, float]:
    for name, value in NOTIFY.items():
        setattr(settings, name, value)
    settings.SITE_URL = "https://keeper.example.com"
    return NOTIFY


@pytest.fixture
def fakes(settings) -> Iterator[SimpleNamespace]:
    """All five provider fakes (UniSender serves SMS and email), reached through settings."""
    started = start_fakes()
    for provider in PROVIDERS.values():
        setattr(settings, provider.setting, getattr(started, provider.fake).base_url)
    yield started
    for fake in vars(started).values():
        fake.stop()
    for fake in vars(started).values():
        fake.assert_clean()


@pytest.fixture
def mailbox(settings) -> Iterator[FakeSmtp]:
    """A fake SMTP server; Django's ADMINS are emailed there (here and in workers)."""
    with FakeSmtp() as smtp:
        host, port = smtp.url.removeprefix("smtp://").split(":")
        settings.EMAIL_URL = smtp.url
        settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
        settings.EMAIL_HOST, settings.EMAIL_PORT = host, int(port)
        settings.ADMINS = [("Ops Team", "ops@example.org")]
        yield smtp


@pytest.fixture
def notify_sweep(transactional_db):
    """The notifications sweep as the data migration makes it, run by beat every second."""
    from django_celery_beat.models import IntervalSchedule, PeriodicTask

    from notifications.beat import SWEEP_TASK, ensure_sweep_schedule

    ensure_sweep_schedule(PeriodicTask, IntervalSchedule, 1)
    every_second, _ = IntervalSchedule.objects.get_or_create(every=1, period="seconds")
    PeriodicTask.objects.filter(task=SWEEP_TASK).update(interval=every_second)
    return PeriodicTask.objects.get(task=SWEEP_TASK)


@pytest.fixture
def owner(db):
    return get_user_model().objects.create_user(
        "ann", EMAIL, first_name="Ann", last_name="Smith", is_staff=True
    )


@pytest.fixture
def workers(tmp_path, broker, fakes, notify, mailbox) -> Iterator[CeleryProcesses]:
    """Real Celery workers (on Redis, then on RabbitMQ) that send through the fakes (and email
    the admins through the fake SMTP server); their logs must hold no secret."""
    with CeleryProcesses(tmp_path, broker, **worker_env(fakes, mailbox.url)) as procs:
        yield procs
        # The test is over and nothing is left to finish: a warm (or even a cold) shutdown
        # costs seconds per worker, so stop the pool processes and the worker at once.
        for proc, _ in procs.procs:
            for pid in child_pids(proc.pid):
                os.kill(pid, signal.SIGKILL)
            proc.kill()
            proc.wait(10)
    logs = "\n".join(path.read_text() for _, path in procs.procs)
    leaked = [secret for secret in secrets() if secret in logs]
    assert not leaked, f"worker logs hold secrets: {leaked}"
