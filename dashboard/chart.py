"""The home page's chart of the last 24 hours: refreshes and failures per hour, drawn as an SVG
on the server (no script, no CDN)."""

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.utils import timezone

HOURS = 24
WIDTH, HEIGHT, BAR = 720, 160, 24  # the SVG's drawing area and one hour's bar, in px
STEP = WIDTH // HOURS


@dataclass(frozen=True)
class Bar:
    x: int
    hour: str  # "14" (local time), the label under every third bar
    label: bool  # every third bar, counted back from the newest, so the newest has its label
    day: str  # "2026-12-06" under the first labelled bar of each day, else ""
    date: str  # the bar's date for its tooltip
    succeeded: int
    failed: int
    ok_y: int
    ok_height: int
    fail_y: int
    fail_height: int


@dataclass(frozen=True)
class Chart:
    bars: list[Bar]
    peak: int
    succeeded: int
    failed: int
    width: int = WIDTH
    height: int = HEIGHT


def start_of_window(now: datetime | None = None) -> datetime:
    """The first hour the chart shows (the current hour is the last of 24)."""
    now = timezone.localtime(now or timezone.now())
    return now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=HOURS - 1)


def hourly(rows: Iterable[tuple[datetime, int, int]], now: datetime | None = None) -> Chart:
    """Bars from (hour, succeeded, failed) rows; hours without rows are empty bars. Failures
    stack on top of successes, in red."""
    start = start_of_window(now)
    counts = {timezone.localtime(hour).replace(minute=0): (ok, bad) for hour, ok, bad in rows}
    slots = [timezone.localtime(start + timedelta(hours=i)) for i in range(HOURS)]
    values = [counts.get(slot, (0, 0)) for slot in slots]
    peak = max((ok + bad for ok, bad in values), default=0)
    scale = (HEIGHT - 20) / peak if peak else 0
    bars, last_day = [], ""
    for i, (slot, (ok, bad)) in enumerate(zip(slots, values, strict=True)):
        ok_height, fail_height = round(ok * scale), round(bad * scale)
        label = (HOURS - 1 - i) % 3 == 0
        date = f"{slot:%Y-%m-%d}"
        day = date if label and date != last_day else ""
        last_day = date if label else last_day
        bars.append(
            Bar(
                x=i * STEP + (STEP - BAR) // 2,
                hour=f"{slot:%H}",
                label=label,
                day=day,
                date=date,
                succeeded=ok,
                failed=bad,
                ok_y=HEIGHT - ok_height,
                ok_height=ok_height,
                fail_y=HEIGHT - ok_height - fail_height,
                fail_height=fail_height,
            )
        )
    return Chart(bars, peak, sum(ok for ok, _ in values), sum(bad for _, bad in values))
