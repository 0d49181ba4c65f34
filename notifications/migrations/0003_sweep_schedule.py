from django.conf import settings
from django.db import migrations

from notifications.beat import ensure_sweep_schedule


def create_sweep(apps, schema_editor):
    ensure_sweep_schedule(
        apps.get_model("django_celery_beat", "PeriodicTask"),
        apps.get_model("django_celery_beat", "IntervalSchedule"),
        settings.NOTIFY_SWEEP_INTERVAL_SECONDS,
    )


class Migration(migrations.Migration):
    dependencies = [
        ("notifications", "0002_channel_delivery"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(create_sweep, migrations.RunPython.noop)]
