"""The Celery task of connecting: the daily check of the uninstall handlers (portals.connect.
eventbind). Registered under its name from before the rooms, which the data migration's periodic
task refers to. Nothing imports this module; CELERY_IMPORTS loads it in workers."""

from celery import shared_task

from portals.beat import EVENT_BINDING_TASK
from portals.connect import eventbind


@shared_task(name=EVENT_BINDING_TASK, ignore_result=True)
def check_event_bindings() -> int:
    return eventbind.check_all()
