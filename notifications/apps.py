"""The notifications app: ready() registers its checks and connects the receivers of the
token signals (incidents.escalation) and of the incident signals (delivery.dispatch)."""

from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class NotificationsConfig(AppConfig):
    name = "notifications"
    verbose_name = _("Escalations and notifications")

    def ready(self) -> None:
        from notifications import checks
        from notifications.delivery import dispatch
        from notifications.incidents import escalation

        checks.register_checks()
        dispatch.connect_receivers()
        escalation.connect_receivers()
