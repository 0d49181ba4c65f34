"""Portals: Bitrix24 portals, app credentials and tokens; keeping every token alive and
handing out valid access tokens.

Rooms, top to bottom (checked by import-linter): admin/ (the staff pages); connect/ (Add task,
the Connect button, install and events); rest.py (the REST client bound to the token service:
`from portals.rest import Bitrix24, RestError, BatchResult`); tokens/ (the public token API
`from portals.tokens import get_access_token, get_token, refresh`, the single-flight refresh,
the one writer of a token's state, the journal, the sweep and its Celery tasks); addresses.py
(who may hold a portal's address); models.py; bitrix/ (everything that speaks to Bitrix24:
OAuth and REST clients, the error table, the allowed authorization servers, the rate limiter;
no ORM but the rate limiter's one table). portals never imports notifications: it announces
what happened through portals.tokens.signals."""
