"""From an incident to a message a person reads: dispatch.py (which channels get a delivery,
and when a task is enqueued), sending.py (claim and send one delivery, or a digest:
digests.py; the text: messages.py), outcomes.py (sent, retried later, or failed with the channel
switched off) and reports.py (asking the provider whether an accepted message arrived). Called
by the Celery tasks (notifications.tasks) and the incident signals."""
