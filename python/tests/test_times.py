import datetime

import pytest

from jobd import times
from jobd.suggest import closest

UTC = datetime.timezone.utc


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-27T17:30:05Z", datetime.datetime(2026, 11, 27, 17, 30, 5, tzinfo=UTC)),
        ("2026-11-27T17:30:05.000001Z", datetime.datetime(2026, 11, 27, 17, 30, 5, 1, tzinfo=UTC)),
        ("2026-11-27T17:30:05.5Z", datetime.datetime(2026, 11, 27, 17, 30, 5, 500000, tzinfo=UTC)),
        ("2026-11-27t17:30:05.123456789z", datetime.datetime(2026, 11, 27, 17, 30, 5, 123456, tzinfo=UTC)),
        ("2026-11-27T18:30:05+01:00", datetime.datetime(2026, 11, 27, 17, 30, 5, tzinfo=UTC)),
        ("2026-11-27T12:00:05-05:30", datetime.datetime(2026, 11, 27, 17, 30, 5, tzinfo=UTC)),
    ],
)
def test_rfc3339(text: str, expected: datetime.datetime) -> None:
    parsed = times.parse_time(text)
    assert parsed == expected and parsed.utcoffset() is not None


@pytest.mark.parametrize("text", ["2026-11-27T17:30:05", "2026-11-27", "tomorrow", "2026-11-27T17:30:05Zjunk"])
def test_not_rfc3339(text: str) -> None:
    with pytest.raises(ValueError, match="is not an RFC 3339 time"):
        times.parse_time(text)


def test_format_is_utc_with_microseconds() -> None:
    zone = datetime.timezone(datetime.timedelta(hours=2))
    at = datetime.datetime(2026, 3, 1, 2, 0, tzinfo=zone)
    assert times.format_time(at) == "2026-03-01T00:00:00.000000Z"
    assert times.parse_time(times.format_time(at)) == at


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("250ms", 0.25), ("5s", 5), ("2m", 120), ("1h30m", 5400), ("1d", 86400), (90, 90), (1.5, 1.5)],
)
def test_durations(value: object, seconds: float) -> None:
    assert times.parse_duration(value) == datetime.timedelta(seconds=seconds)


@pytest.mark.parametrize("value", ["5", "5 m", "m", "", "5w", -1, True, None, "1h30"])
def test_not_durations(value: object) -> None:
    with pytest.raises(ValueError):
        times.parse_duration(value)


def test_did_you_mean_as_jobd_suggests() -> None:
    keys = ["schedule", "every", "command", "timeout", "max_instances"]
    assert closest("shedule", keys) == "schedule"
    assert closest("comand", keys) == "command"
    assert closest("timeuot", keys) == "timeout"
    assert closest("max_instance", keys) == "max_instances"
    assert closest("Command", keys) == "command"
    assert closest("foo", keys) is None
    assert closest("retry", ["retries", "retry_delay"]) == "retries"
    assert closest("user", keys) is None
    assert closest("x" * 101, ["x" * 101]) is None
