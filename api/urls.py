"""The token API's addresses under /api/ (a contract: README "Getting a token from other
languages")."""

from django.urls import path, re_path

from api import views

urlpatterns = [
    path("tokens/", views.lookup, name="api-token-lookup"),
    path("tokens/<str:reference>/", views.token, name="api-token"),
    path("tokens/<str:reference>/renew/", views.renew, name="api-token-renew"),
    re_path(r"^(?P<path>.*)$", views.not_found),  # JSON, not an HTML page, for any other path
]
