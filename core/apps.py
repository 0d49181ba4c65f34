"""The app configs of core: CoreConfig (registers the web edge's system checks), and the admin
app with our pages in place of third-party ones (core.thirdparty_admin)."""

from django.apps import AppConfig
from django.contrib import admin
from django.contrib.admin.apps import AdminConfig as DjangoAdminConfig


class CoreConfig(AppConfig):
    name = "core"
    verbose_name = "b24keeper core"

    def ready(self) -> None:
        from core import checks

        checks.register_checks()


class AdminConfig(DjangoAdminConfig):
    """django.contrib.admin, as INSTALLED_APPS names it: its ready() imports every app's admin
    module, and only then can a page registered there be replaced."""

    def ready(self) -> None:
        super().ready()
        from core import thirdparty_admin

        thirdparty_admin.register(admin.site)
