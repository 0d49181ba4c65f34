"""How values look on every page: one empty-value marker and one date format (the admin's
empty_value_display and FORMAT_MODULE_PATH say the same), so pages never disagree."""

from datetime import datetime, timedelta

from django.utils import formats, timezone
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

EMPTY = "—"


def when(moment: datetime | None) -> str:
    """'2026-11-29 09:56' in the configured time zone, or the empty marker."""
    if moment is None:
        return EMPTY
    return formats.date_format(timezone.localtime(moment), "DATETIME_FORMAT")


def duration(delta: timedelta) -> str:
    """'45 s', '58 min', '3 h', '2 d': how long, roughly."""
    seconds = int(abs(delta.total_seconds()))
    if seconds < 60:
        return _("%(n)d s") % {"n": seconds}
    if seconds < 2 * 3600:
        return _("%(n)d min") % {"n": seconds // 60}
    if seconds < 2 * 86400:
        return _("%(n)d h") % {"n": seconds // 3600}
    return ngettext("%(n)d day", "%(n)d days", seconds // 86400) % {"n": seconds // 86400}


def ago(moment: datetime | None) -> str:
    if moment is None:
        return EMPTY
    return _("%(duration)s ago") % {"duration": duration(timezone.now() - moment)}
