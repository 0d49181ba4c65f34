"""The two staff roles, as Django groups (created by a data migration, kept up to date by later
ones): assign people to a group in the admin instead of picking permissions one by one.

- b24keeper viewers: see everything (secrets are masked anyway), change nothing.
- b24keeper operators: also connect portals, refresh now, disable/enable tokens and channels,
  and send test messages. Changing app credentials (in Add task too), channels and schedules
  stays with admins (superusers or people given those model permissions explicitly).

Every admin action requires a change or delete permission or one of our custom ones (those
below, and api.manage_apikey), third-party actions too (core.thirdparty_admin), so a group
given only view permissions stays read-only.
"""

from typing import Any

VIEWERS = "b24keeper viewers"
OPERATORS = "b24keeper operators"
# Every model of these apps can be viewed by viewers.
VIEWED_APPS = ("portals", "notifications", "django_celery_beat", "api")
OPERATOR_PERMISSIONS = (
    ("portals", "connect_portal"),
    ("portals", "refresh_token"),
    ("portals", "toggle_token"),
    ("notifications", "send_test_message"),
    ("notifications", "toggle_channel"),
)


def ensure_groups(apps: Any) -> None:
    """Create or complete both groups. Takes the migration's `apps` (historical models);
    permissions are created first, since Django otherwise makes them only after migrating."""
    from django.contrib.auth.management import create_permissions

    for app_config in apps.get_app_configs():
        app_config.models_module = True
        create_permissions(app_config, apps=apps, verbosity=0)
        app_config.models_module = None
    group_model = apps.get_model("auth", "Group")
    permission_model = apps.get_model("auth", "Permission")
    views = permission_model.objects.filter(
        content_type__app_label__in=VIEWED_APPS, codename__startswith="view_"
    )
    viewers, _ = group_model.objects.get_or_create(name=VIEWERS)
    viewers.permissions.add(*views)
    operators, _ = group_model.objects.get_or_create(name=OPERATORS)
    operators.permissions.add(*views)
    for app_label, codename in OPERATOR_PERMISSIONS:
        found = permission_model.objects.filter(
            content_type__app_label=app_label, codename=codename
        )
        operators.permissions.add(*found)
