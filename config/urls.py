from django.contrib import admin
from django.urls import path

admin.site.site_header = "b24keeper"
admin.site.site_title = "b24keeper"
admin.site.index_title = "Bitrix24 portals, tokens and escalations"

urlpatterns = [
    path("admin/", admin.site.urls),
]
