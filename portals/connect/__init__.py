"""Connecting a portal, every way staff or Bitrix24 do it: "Add task" with a code (code.py),
the Connect button and its OAuth callback (states.py, callback.py), the install frame and app
events (install.py, pair_proof.py, uninstall.py), the one place every connect stores its pair
(grants.py, guards.py), binding the uninstall handler (eventbind.py, tasks.py), and the forms,
views and URLs of /bitrix/<client_id>/... (forms.py, inbound.py, views.py, urls.py). Called by
the admin and the management commands; writes tokens only through portals.tokens.state."""
