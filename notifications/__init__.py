"""Notifications: who hears about a failing token, through which channel, and what came of it.

Rooms, top to bottom (checked by import-linter): admin/ (the channel, incident and delivery
pages); tasks.py (Celery, on top; nothing imports it); delivery/ (from an incident to
deliveries, sending them through a provider, retries, digests, delivery reports); incidents/
(when a token failure becomes an incident, and who covers it); models.py; backends/ (one small
module per provider, no ORM). notifications listens to portals (portals.tokens.signals);
portals never imports notifications."""
