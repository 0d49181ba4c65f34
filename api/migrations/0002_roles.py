"""Viewers and operators may see API keys (view_apikey; config/roles.py). Creating and revoking
them (api.manage_apikey) is given to people one by one."""

from django.db import migrations

from core.roles import ensure_groups


def add_view_permission(apps, schema_editor):
    ensure_groups(apps)


class Migration(migrations.Migration):
    dependencies = [
        ("api", "0001_initial"),
        ("notifications", "0005_roles"),
    ]
    operations = [migrations.RunPython(add_view_permission, migrations.RunPython.noop)]
