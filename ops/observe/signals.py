"""Hooks into Celery and Django: worker heartbeats, and a fresh logging context per task and
per request (so a log line never carries the previous task's token reference), and a prefork
pool process's counters written before it exits (it leaves through os._exit: atexit never runs
there)."""

from typing import Any

from celery.signals import task_postrun, task_prerun, worker_process_shutdown
from django.core.signals import request_started

from core.logging import clear_context
from ops.record import heartbeat, metrics


def connect_receivers() -> None:
    task_prerun.connect(_fresh_context, weak=False, dispatch_uid="ops.fresh_context.task")
    request_started.connect(_fresh_context, weak=False, dispatch_uid="ops.fresh_context.web")
    task_postrun.connect(_worker_heartbeat, weak=False, dispatch_uid="ops.worker_heartbeat")
    worker_process_shutdown.connect(
        _flush_metrics, weak=False, dispatch_uid="ops.flush_metrics.pool_process"
    )


def _fresh_context(**kwargs: Any) -> None:
    clear_context()


def _worker_heartbeat(sender: Any = None, **kwargs: Any) -> None:
    request = getattr(sender, "request", None)
    hostname = getattr(request, "hostname", None)
    if hostname and not getattr(request, "is_eager", False):  # only tasks run by a worker
        heartbeat.worker_finished_task(hostname)


def _flush_metrics(**kwargs: Any) -> None:
    metrics.flush()
