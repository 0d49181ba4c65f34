"""The two brokers the real worker and beat tests run on: Redis and RabbitMQ.

Each test gets a broker of its own: Redis, the database named by CELERY_BROKER_URL (one per
checkout), emptied before and after; RabbitMQ, a new virtual host made for the test and
deleted after it (with `rabbitmqctl`, as root, against 127.0.0.1:5672, guest/guest), so tests
of several checkouts never see each other's messages or worker pings. This process's own
Celery app publishes to the same broker for the test's duration (use_broker).

TEST_BROKERS=redis (or rabbitmq) runs only one of them while working on something else.
"""

import contextlib
import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator

import kombu.pools
import pytest

REDIS_URL = os.environ.get("CELERY_BROKER_URL", "redis://127.0.0.1:6379/15")
RABBITMQ_URL = os.environ.get("TEST_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672")
BROKERS = [b.strip() for b in os.environ.get("TEST_BROKERS", "redis,rabbitmq").split(",") if b]


@contextlib.contextmanager
def use_broker(url: str) -> Iterator[str]:
    """Point this process's Celery app (publishing, pings) at `url`, then back."""
    from config.celery import app

    previous = app.conf.broker_url
    _switch(app, url)
    try:
        yield url
    finally:
        _switch(app, previous)


def _switch(app, url: str) -> None:
    # Celery reads CELERY_BROKER_URL from the environment before its own setting.
    os.environ["CELERY_BROKER_URL"] = app.conf.broker_url = url
    kombu.pools.reset()  # closes the pooled connections and forgets the (closed) pools
    app._pool = None
    app.amqp._producer_pool = None
    app.control.mailbox.__dict__.pop("producer_pool", None)  # cached: evaluated again


@contextlib.contextmanager
def redis_broker() -> Iterator[str]:
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    client.flushdb()
    try:
        with use_broker(REDIS_URL):
            yield REDIS_URL
    finally:
        client.flushdb()


def _rabbitmqctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", "-q", *args], check=True, capture_output=True, timeout=60)


@contextlib.contextmanager
def rabbitmq_broker() -> Iterator[str]:
    if not shutil.which("rabbitmqctl"):
        if os.environ.get("CI"):
            pytest.fail("rabbitmqctl is missing: install rabbitmq-server (bin/test starts it)")
        pytest.skip("RabbitMQ (rabbitmqctl) is not installed here")
    vhost = f"b24keeper-test-{uuid.uuid4().hex[:12]}"
    try:
        _rabbitmqctl("add_vhost", vhost)
    except subprocess.CalledProcessError as err:
        if os.environ.get("CI"):
            raise
        pytest.skip(f"RabbitMQ is not running: {err.stderr.decode(errors='replace')[:200]}")
    try:
        _rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
        with use_broker(f"{RABBITMQ_URL}/{vhost}") as url:
            yield url
    finally:
        _rabbitmqctl("delete_vhost", vhost)


def broker(kind: str) -> contextlib.AbstractContextManager[str]:
    return redis_broker() if kind == "redis" else rabbitmq_broker()
