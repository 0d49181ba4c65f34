"""The two staff groups, b24keeper viewers and b24keeper operators (config/roles.py)."""

from django.db import migrations

from core.roles import ensure_groups


def create_groups(apps, schema_editor):
    ensure_groups(apps)


def remove_groups(apps, schema_editor):
    from core.roles import OPERATORS, VIEWERS

    apps.get_model("auth", "Group").objects.filter(name__in=[VIEWERS, OPERATORS]).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("auth", "0012_alter_user_first_name_max_length"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
        ("portals", "0007_policy_bounds"),
        ("notifications", "0004_channel_permissions"),
    ]
    operations = [migrations.RunPython(create_groups, remove_groups)]
