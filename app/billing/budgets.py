"""Budget periods: UTC calendar days, ISO weeks (Monday to Sunday) and months.

A budget period is named by its window, "<period>:<first day>" ("month:2026-12-01"). The window
is frozen onto a request when its hold is placed, so a hold that ends after midnight still gives
back to the period it was taken from.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

PERIODS = ("day", "week", "month")


def window_start(period: str, at: datetime) -> datetime:
    """Midnight UTC of the first day of the `period` that contains `at`."""
    day = at.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "day":
        return day
    if period == "week":
        return day - timedelta(days=day.weekday())
    if period == "month":
        return day.replace(day=1)
    raise ValueError(f"unknown budget period {period!r}; use one of {', '.join(PERIODS)}")


def window_end(period: str, at: datetime) -> datetime:
    """Midnight UTC that starts the next period: when the budget resets."""
    start = window_start(period, at)
    if period == "day":
        return start + timedelta(days=1)
    if period == "week":
        return start + timedelta(days=7)
    return (start + timedelta(days=32)).replace(day=1)


def window_of(period: str, at: datetime) -> str:
    """The name of the period containing `at`, e.g. "week:2026-11-30"."""
    return f"{period}:{window_start(period, at).date().isoformat()}"
