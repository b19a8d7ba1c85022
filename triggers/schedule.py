"""Trigger schedules: `at` (once), `every` ("30m", "2h", "1d"; "45s" too) and 5-field `cron`,
each in an IANA time zone (croniter reads the cron expression in that zone)."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterBadDateError, croniter
from django.utils.dateparse import parse_datetime

_INTERVAL_RE = re.compile(r"^\s*(\d+)\s*([smhd])\s*$", re.IGNORECASE)
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}
MAX_INTERVAL_S = 366 * 86400
_UTC = ZoneInfo("UTC")


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
    digits = match.group(1)
    seconds = int(digits) * _UNIT_S[match.group(2).lower()] if len(digits) <= 12 else MAX_INTERVAL_S + 1
    if seconds < minimum:
        raise ScheduleInvalid("scheduleInterval", f"Invalid parameter 'scheduleInterval': at least {minimum} seconds")
    if seconds > MAX_INTERVAL_S:
        raise ScheduleInvalid("scheduleInterval", "Invalid parameter 'scheduleInterval': at most 366 days")
    return seconds


def at_time(value: object, tz: str) -> datetime:
    """An ISO 8601 `scheduleAt` as an aware UTC time (a naive one is read in `tz`)."""
    message = "Invalid parameter 'scheduleAt': an ISO 8601 time such as \"2026-03-01T09:00:00Z\""
    try:
        parsed = parse_datetime(str(value or ""))
        if parsed is None:
            raise ScheduleInvalid("scheduleAt", message)
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=zone(tz))
        return parsed.astimezone(_UTC)
    except (ValueError, OverflowError) as exc:  # 2024-02-30, or a year past 9999 in UTC
        raise ScheduleInvalid("scheduleAt", f"{message} ({exc})") from exc


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
    try:
        return croniter(cron, local).get_next(datetime).astimezone(_UTC)
    except CroniterBadDateError as exc:  # "0 0 30 2 *": a day that never comes
        raise ScheduleInvalid(
            "scheduleCron", "Invalid parameter 'scheduleCron': the expression never matches a date"
        ) from exc
