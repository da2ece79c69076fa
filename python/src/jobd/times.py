"""Times and durations as the spool writes them: RFC 3339 instants, jobd's durations."""

from __future__ import annotations

import datetime
import re

UTC = datetime.timezone.utc

# datetime.fromisoformat reads `Z` and fractions other than 3 or 6 digits only from
# Python 3.11 on: jobd writes microseconds, other clients may write anything RFC 3339
# allows.
_RFC3339 = re.compile(
    r"(\d{4})-(\d\d)-(\d\d)[Tt ](\d\d):(\d\d):(\d\d)(?:\.(\d+))?(?:([Zz])|([+-])(\d\d):(\d\d))"
)

_DURATION_PART = re.compile(r"(\d+)(ms|s|m|h|d)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_time(text: str) -> datetime.datetime:
    """An aware datetime from RFC 3339 text; ValueError when it is not one."""
    match = _RFC3339.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"`{text}` is not an RFC 3339 time like 2026-11-27T18:00:00Z")
    year, month, day, hour, minute, second = (int(match.group(i)) for i in range(1, 7))
    fraction = (match.group(7) or "0")[:6].ljust(6, "0")
    if match.group(8):
        zone = UTC
    else:
        sign = -1 if match.group(9) == "-" else 1
        offset = datetime.timedelta(hours=int(match.group(10)), minutes=int(match.group(11)))
        zone = datetime.timezone(sign * offset)
    return datetime.datetime(year, month, day, hour, minute, second, int(fraction), tzinfo=zone)


def format_time(at: datetime.datetime) -> str:
    """RFC 3339 in UTC with microseconds, as jobd writes its own times."""
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_duration(value: object) -> datetime.timedelta:
    """A `delay:` as a request may hold it: jobd's duration text (`90s`, `1h30m`) or
    seconds as a number. ValueError when it is neither."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if value < 0:
            raise ValueError(f"delay {value} is negative")
        return datetime.timedelta(seconds=value)
    if isinstance(value, str):
        text = value.strip()
        parts = _DURATION_PART.findall(text)
        if parts and "".join(number + unit for number, unit in parts) == text:
            return datetime.timedelta(
                seconds=sum(int(number) * _UNIT_SECONDS[unit] for number, unit in parts)
            )
    raise ValueError(f"`{value}` is not a duration (write it like 250ms, 5s, 2m, 1h, 1d or 1h30m)")


def format_duration(delay: datetime.timedelta) -> str:
    """Whole milliseconds in jobd's duration syntax, which every jobd reads."""
    return f"{round(delay.total_seconds() * 1000)}ms"


def now() -> datetime.datetime:
    return datetime.datetime.now(UTC)
