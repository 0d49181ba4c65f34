"""The daily periodic task that prunes old refresh attempts and deliveries (ops.retention)."""

from django.db import migrations

from ops.beat import PRUNE_TASK, ensure_prune_schedule


def create_prune_task(apps, schema_editor):
    ensure_prune_schedule(
        apps.get_model("django_celery_beat", "PeriodicTask"),
        apps.get_model("django_celery_beat", "IntervalSchedule"),
    )


def remove_prune_task(apps, schema_editor):
    apps.get_model("django_celery_beat", "PeriodicTask").objects.filter(task=PRUNE_TASK).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("ops", "0001_counters_heartbeats"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(create_prune_task, remove_prune_task)]
