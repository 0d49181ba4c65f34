from django.apps import AppConfig


class NotificationsConfig(AppConfig):
    name = "notifications"
    verbose_name = "Escalations and notifications"

    def ready(self) -> None:
        from notifications import dispatch, escalation

        dispatch.connect_receivers()
        escalation.connect_receivers()
