"""Every address of the service (contracts: /health/, /metrics, /bitrix/, /api/, /rest/,
/admin/)."""

from django.contrib import admin
from django.urls import include, path, re_path
from django.utils.translation import gettext_lazy as _

from api import proxy
from core.display import EMPTY
from dashboard.views import home
from ops.observe.views import health_view, metrics_view

admin.site.site_header = "b24keeper"
admin.site.site_title = "b24keeper"
admin.site.index_title = _("Bitrix24 portals, tokens and escalations")
admin.site.site_url = "/"  # "View site" leads to the staff home page
admin.site.empty_value_display = EMPTY  # one empty-value marker on every page
# The app list beside every page takes 300 px a laptop needs for the lists' columns; the
# breadcrumbs and the index page lead everywhere it did.
admin.site.enable_nav_sidebar = False

urlpatterns = [
    path("", home, name="home"),
    path("admin/", admin.site.urls),
    # The language switch in the admin's header (Django's set_language: POST /i18n/setlang/).
    path("i18n/", include("django.conf.urls.i18n")),
    # Contracts: probes and scrapers use these exact paths (both spellings of /metrics).
    path("health/", health_view, name="health"),
    path("metrics", metrics_view, name="metrics"),
    path("metrics/", metrics_view),
    # Bitrix24's handler addresses (a contract: the app settings in Bitrix24 point here).
    path("bitrix/", include("portals.connect.urls")),
    # The token API for programs that are not Python (api/views.py; README).
    path("api/", include("api.urls")),
    # The REST proxy, in an inbound webhook's shape (api/proxy.py; a contract: libraries are
    # given SITE_URL/rest/<token id>/<api key>/ as their webhook).
    re_path(
        r"^rest/(?P<token_id>[0-9]{1,12})/(?P<key>[^/]{1,200})/(?P<method>[^/]{1,200})/?$",
        proxy.call,
        name="rest-proxy",
    ),
]
