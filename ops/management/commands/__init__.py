"""`manage.py prune_history`."""
