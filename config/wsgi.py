"""The WSGI entry for gunicorn; each web process replays its machine's token journal at start."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
application = get_wsgi_application()

from portals.tokens.startup import on_process_start  # noqa: E402 (needs Django set up)

on_process_start()
