"""The token API's addresses under /api/ (a contract: README "Getting a token from other
languages")."""

from django.urls import path, re_path

from api import views

urlpatterns = [
    path("tokens/<str:reference>/", views.token, name="api-token"),
    re_path(r"^(?P<path>.*)$", views.not_found),  # JSON, not an HTML page, for any other path
]
