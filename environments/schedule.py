"""Trigger schedules: `at` (once), `every` ("30m", "2h", "1d"; "45s" too) and 5-field `cron`,
each in an IANA time zone (croniter reads the cron expression in that zone)."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter

_INTERVAL_RE = re.compile(r"^\s*(\d+)\s*([smhd])\s*$", re.IGNORECASE)
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}


class ScheduleInvalid(ValueError):
    def __init__(self, parameter: str, message: str) -> None:
        super().__init__(message)
        self.parameter = parameter


def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ScheduleInvalid("timezone", f"Invalid parameter 'timezone': unknown time zone {name!r}") from exc


def interval_seconds(value: str, *, minimum: int) -> int:
    match = _INTERVAL_RE.match(value or "")
    if not match:
        raise ScheduleInvalid(
            "scheduleInterval",
            'Invalid parameter \'scheduleInterval\': use a number and a unit, e.g. "30m", "2h" or "1d"',
        )
    seconds = int(match.group(1)) * _UNIT_S[match.group(2).lower()]
    if seconds < minimum:
        raise ScheduleInvalid("scheduleInterval", f"Invalid parameter 'scheduleInterval': at least {minimum} seconds")
    return seconds


def check_cron(expression: str) -> str:
    if not isinstance(expression, str) or len(expression.split()) != 5 or not croniter.is_valid(expression):
        raise ScheduleInvalid(
            "scheduleCron", "Invalid parameter 'scheduleCron': a 5-field cron expression such as \"0 9 * * 1-5\""
        )
    return expression.strip()


def next_run(
    *,
    schedule_type: str,
    at: datetime | None,
    interval: str,
    cron: str,
    tz: str,
    after: datetime,
    previous: datetime | None = None,
    minimum: int = 60,
) -> datetime | None:
    """The first run time strictly after `after` (None: an `at` schedule that has passed).

    `every` keeps its phase: the next run is previous + k * interval, not now + interval, so a
    late tick does not shift the schedule.
    """
    if schedule_type == "at":
        return at if at is not None and at > after else None
    if schedule_type == "every":
        step = timedelta(seconds=interval_seconds(interval, minimum=minimum))
        if previous is None:
            return after + step
        missed = max(0, int((after - previous) / step))
        candidate = previous + step * (missed + 1)
        return candidate if candidate > after else candidate + step
    local = after.astimezone(zone(tz))
    return croniter(cron, local).get_next(datetime).astimezone(ZoneInfo("UTC"))
