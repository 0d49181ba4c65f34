from django.contrib import admin
from django.urls import include, path

admin.site.site_header = "b24keeper"
admin.site.site_title = "b24keeper"
admin.site.index_title = "Bitrix24 portals, tokens and escalations"

urlpatterns = [
    path("admin/", admin.site.urls),
    # The token API for programs that are not Python (api/views.py; README).
    path("api/", include("api.urls")),
]
