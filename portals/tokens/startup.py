"""What every process of a machine does when it starts (web in config/wsgi.py, workers at
Celery's worker_ready in config/celery.py): store the token pairs its local journal still holds,
and say loudly if a stored secret cannot be read."""

import logging

from django.core import checks
from django.db import DatabaseError, connection

from portals.tokens.pairs import replay_journal

log = logging.getLogger("portals.tokens.startup")


def on_process_start(run_checks: bool = False) -> None:
    try:
        restored = replay_journal()
    except DatabaseError as err:
        # The database is away; the next refresh of each token replays its entry.
        log.error("journal replay at start failed (%s); it is retried later", type(err).__name__)
    else:
        if restored:
            log.warning("restored %d token pair(s) from the local journal", restored)
    if run_checks:
        for message in checks.run_checks(include_deployment_checks=False):
            if message.is_serious():
                log.error("%s", message)
    connection.close()  # forked children must not share this connection
