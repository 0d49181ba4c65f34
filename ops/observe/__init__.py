"""What an on-call engineer reads: GET /health/ (health.py), GET /metrics (exposition.py),
who may read the details (access.py), the views (views.py), the bounded history (retention.py)
and the hooks that keep worker heartbeats and fresh log contexts (signals.py). On top: may read
every app; nothing below imports it."""
