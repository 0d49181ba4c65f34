"""The portals app: ready() registers its system checks (portals.checks)."""

from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class PortalsConfig(AppConfig):
    name = "portals"
    verbose_name = _("Bitrix24 portals and tokens")

    def ready(self) -> None:
        from portals import checks

        checks.register_checks()
