"""Wiring only: settings (settings.py), URLs (urls.py), the WSGI entry (wsgi.py), the Celery
app (celery.py) and the embedded broker's transport (broker.py)."""

# Load the Celery app whenever Django starts, so @shared_task binds to it.
from config.celery import app as celery_app

__all__ = ("celery_app",)
