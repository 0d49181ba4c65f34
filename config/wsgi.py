"""The WSGI entry for gunicorn; each web process replays its machine's token journal at start
and runs the journal loop (portals.tokens.replayer), in a forked child too (gunicorn --preload)."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
application = get_wsgi_application()

from portals.tokens import replayer  # noqa: E402 (needs Django set up)
from portals.tokens.startup import on_process_start  # noqa: E402

on_process_start()
replayer.start()
os.register_at_fork(after_in_child=replayer.start)
