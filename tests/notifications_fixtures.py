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

from tests.notifications_helpers import EMAIL, FAKES, NOTIFY, PROVIDERS, secrets, worker_env
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
    started = SimpleNamespace(**{name: fake().start() for name, fake in FAKES.items()})
    for provider in PROVIDERS.values():
        setattr(settings, provider.setting, getattr(started, provider.fake).base_url)
    yield started
    for fake in vars(started).values():
        fake.stop()
    for fake in vars(started).values():
        fake.assert_clean()


@pytest.fixture
def owner(db):
    return get_user_model().objects.create_user(
        "ann", EMAIL, first_name="Ann", last_name="Smith", is_staff=True
    )


@pytest.fixture
def workers(tmp_path, broker, fakes, notify) -> Iterator[CeleryProcesses]:
    """Real Celery workers (on Redis, then on RabbitMQ) that send through the fakes; their
    logs must hold no secret."""
    with CeleryProcesses(tmp_path, broker, **worker_env(fakes)) as procs:
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
