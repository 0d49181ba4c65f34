"""An experiment for bench/refresh_cycle.py --settings bench.settings_reuse_db: the app's
settings, with Celery's Django fix-up told to keep each worker's database connection.

Without CELERY_DB_REUSE_MAX, celery.fixups.django closes every database connection before
and after every task, so each refresh opens a new PostgreSQL session (a backend fork, the
authentication and a cold catalog cache). With it, a connection is closed only every
2 × CELERY_DB_REUSE_MAX task starts and ends.
"""

from config.settings import *  # noqa: F403

CELERY_DB_REUSE_MAX = 1000
