from django.db import migrations

from portals.beat import EVENT_BINDING_TASK, ensure_event_binding_check


def create_check(apps, schema_editor):
    ensure_event_binding_check(
        apps.get_model("django_celery_beat", "PeriodicTask"),
        apps.get_model("django_celery_beat", "IntervalSchedule"),
    )


def remove_check(apps, schema_editor):
    apps.get_model("django_celery_beat", "PeriodicTask").objects.filter(
        task=EVENT_BINDING_TASK
    ).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("portals", "0011_token_event_binding"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(create_check, remove_check)]
