"""Refresh policies written before their bounds existed are brought inside them (the values a
schedule can use: 1–55 minutes, 1–59 minutes before expiry, 1–29 days)."""

from django.db import migrations

BOUNDS = {
    "refresh_interval_minutes": (1, 55),
    "refresh_before_expiry_minutes": (1, 59),
    "keepalive_days": (1, 29),
}


def clamp(apps, schema_editor):
    credentials = apps.get_model("portals", "AppCredentials")
    for field, (low, high) in BOUNDS.items():
        credentials.objects.filter(**{f"{field}__lt": low}).update(**{field: low})
        credentials.objects.filter(**{f"{field}__gt": high}).update(**{field: high})


class Migration(migrations.Migration):
    dependencies = [("portals", "0006_trust_fields_permissions")]
    # Reversing keeps the clamped values: the old ones could not be used anyway.
    operations = [migrations.RunPython(clamp, migrations.RunPython.noop)]
