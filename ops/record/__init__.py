"""Recording what happens, for the observers above: running totals for the metrics
(metrics.py) and heartbeats (heartbeat.py), both in the database. Low: portals and notifications
call it; it imports none of their modules."""
