"""Operations, on two floors. record/ (low: portals and notifications call it) counts what
happens and keeps heartbeats; observe/ (on top) answers GET /health/ and /metrics and prunes old
history; tasks.py runs the prune daily. The models (Counter, Heartbeat) stay in models.py."""
