"""The dashboard app's config."""

from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class DashboardConfig(AppConfig):
    """The staff home page: portals' tokens and notifications' incidents at a glance."""

    name = "dashboard"
    verbose_name = _("Home")
