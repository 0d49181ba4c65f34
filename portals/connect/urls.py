"""Bitrix24's handler addresses, keyed by the app's client_id (a contract: see
portals.connect.views)."""

from django.urls import path

from portals.connect import views

urlpatterns = [
    path("<str:client_id>/callback/", views.bitrix_callback, name="bitrix_callback"),
    path("<str:client_id>/install/", views.bitrix_install, name="bitrix_install"),
    path("<str:client_id>/events/", views.bitrix_events, name="bitrix_events"),
]
