"""The page a signed-in person sees when they may not use a page: the admin's look, in their
language, naming the permission it needs; logged as one line, without a traceback. Installed
as a middleware (config/settings.py). The admin's own views call `require` for their check,
so a refusal names its permission in one wording everywhere."""

from collections.abc import Callable

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.utils.translation import gettext as _

# The last part of a model admin's URL name → the permission that page needs.
PAGE_PERMISSIONS = {
    "_add": "add",
    "_change": "change",
    "_delete": "delete",
    "_changelist": "view",
    "_history": "view",
}


def needs(permission: str) -> str:
    """The refusal's sentence for a missing permission ("app_label.codename")."""
    return _("This needs the permission “%(perm)s”.") % {"perm": permission}


def require(request: HttpRequest, permission: str) -> None:
    """PermissionDenied (this module's 403 page) unless the signed-in user has `permission`."""
    if not request.user.has_perm(permission):
        raise PermissionDenied(needs(permission))


class PermissionDeniedPage:
    """Turns PermissionDenied into the admin-styled 403 page (Django's own handler would log
    the exception with its traceback and, in the admin, show a bare page)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if not isinstance(exception, PermissionDenied):
            return None
        context = {
            **admin.site.each_context(request),
            "title": _("You may not use this page"),
            "reason": str(exception) or needed_permission(request),
        }
        response = TemplateResponse(request, "403.html", context, status=403)
        return response.render()


def needed_permission(request: HttpRequest) -> str:
    """Why, for a model's admin page: the permission its URL name stands for."""
    match = request.resolver_match
    name = match.url_name if match else None
    for model in admin.site._registry:
        opts = model._meta
        for suffix, action in PAGE_PERMISSIONS.items():
            if name == f"{opts.app_label}_{opts.model_name}{suffix}":
                perm = f"{opts.app_label}.{action}_{opts.model_name}"
                return needs(perm)
    return _("Your account has no permission for this page.")
