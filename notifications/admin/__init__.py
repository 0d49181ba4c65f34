"""The admin pages of notifications: channels (channels.py, with the buttons on a channel's
page in channel_views.py and its form in forms.py), and the read-only history of incidents and
deliveries (history.py); what these pages show is in display.py. Django's admin autodiscovery
imports this package; importing the modules registers their pages."""

from notifications.admin import channels, history

__all__ = ["channels", "history"]
