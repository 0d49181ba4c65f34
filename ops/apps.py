"""The ops app: ready() connects the worker heartbeat and log-context hooks."""

from django.apps import AppConfig


class OpsConfig(AppConfig):
    name = "ops"
    verbose_name = "Operations: health, metrics, history"

    def ready(self) -> None:
        from ops.observe import signals

        signals.connect_receivers()
