from django.contrib import admin
from django.urls import path

from ops.views import health_view, metrics_view

admin.site.site_header = "b24keeper"
admin.site.site_title = "b24keeper"
admin.site.index_title = "Bitrix24 portals, tokens and escalations"

urlpatterns = [
    path("admin/", admin.site.urls),
    # Contracts: probes and scrapers use these exact paths (both spellings of /metrics).
    path("health/", health_view, name="health"),
    path("metrics", metrics_view, name="metrics"),
    path("metrics/", metrics_view),
]
