"""The Celery app: configuration comes from Django settings (CELERY_* names)."""

import logging
import os

from celery import Celery
from celery.signals import task_postrun, task_prerun, worker_process_init, worker_ready

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")


class _NoHostnameNotice(logging.Filter):
    """kombu warns "No hostname was supplied" for every connection of a broker that has no
    host by design (the embedded filesystem broker): noise on each start of bin/serve."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("No hostname was supplied")


logging.getLogger("kombu.connection").addFilter(_NoHostnameNotice())

app = Celery("b24keeper")
app.config_from_object("django.conf:settings", namespace="CELERY")


@task_prerun.connect
@task_postrun.connect
def _drop_stale_connections(**kwargs: object) -> None:
    # With CELERY_DB_REUSE_MAX, connections outlive tasks: a connection broken by a database
    # restart, or older than CONN_MAX_AGE, is dropped here instead of failing later tasks.
    from django.db import close_old_connections

    close_old_connections()


@worker_ready.connect
def _on_worker_start(**kwargs: object) -> None:
    # Store pairs this machine's journal still holds, and check that secrets decrypt.
    from portals.tokens import held, replayer
    from portals.tokens.startup import on_process_start

    on_process_start(run_checks=True)
    replayer.start()  # the machine's journal loop (one per machine: a lock decides)
    held.register()  # answer /health/ and the token page: which pairs wait in this memory


@worker_process_init.connect
def _on_pool_process_start(**kwargs: object) -> None:
    # A prefork pool's child refreshes tokens itself: a pair it must hold in memory (the
    # journal could not take it) is retried only by a thread of that child, so start one here.
    from portals.tokens import replayer

    replayer.start()
