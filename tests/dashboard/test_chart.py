"""The home page's chart: the newest bar has its hour label, and each day's first label says
the date."""

from datetime import datetime
from zoneinfo import ZoneInfo

from dashboard.chart import HOURS, hourly


def test_the_newest_bar_is_labelled_and_the_dates_are_shown(settings):
    settings.TIME_ZONE = "UTC"
    now = datetime(2026, 12, 6, 10, 30, tzinfo=ZoneInfo("UTC"))
    chart = hourly([], now)
    assert len(chart.bars) == HOURS
    newest = chart.bars[-1]
    assert newest.label and newest.hour == "10" and newest.day == ""  # the 6th shown before
    days = [(bar.hour, bar.day) for bar in chart.bars if bar.day]
    assert days == [("13", "2026-12-05"), ("01", "2026-12-06")]
    assert all(bar.date in ("2026-12-05", "2026-12-06") for bar in chart.bars)
