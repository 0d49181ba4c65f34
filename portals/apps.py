from django.apps import AppConfig


class PortalsConfig(AppConfig):
    name = "portals"
    verbose_name = "Bitrix24 portals and tokens"

    def ready(self) -> None:
        from config import checks  # noqa: F401  (registers the system checks)
