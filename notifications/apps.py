from django.apps import AppConfig


class NotificationsConfig(AppConfig):
    name = "notifications"
    verbose_name = "Escalations and notifications"

    def ready(self) -> None:
        from notifications import dispatch

        dispatch.connect_receivers()
