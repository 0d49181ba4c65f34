"""The admin app, with our pages in place of third-party ones (config.admin_thirdparty)."""

from django.contrib import admin
from django.contrib.admin.apps import AdminConfig as DjangoAdminConfig


class AdminConfig(DjangoAdminConfig):
    """django.contrib.admin, as INSTALLED_APPS names it: its ready() imports every app's admin
    module, and only then can a page registered there be replaced."""

    def ready(self) -> None:
        super().ready()
        from core import thirdparty_admin

        thirdparty_admin.register(admin.site)
