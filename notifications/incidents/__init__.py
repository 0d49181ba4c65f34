"""Incidents: escalation.py (when a token failure, heard through portals.tokens.signals,
becomes an incident), lifecycle.py (opening, updating and resolving incidents; the only writer
of Incident rows) and coverage.py (whether an open incident reaches an enabled channel)."""
