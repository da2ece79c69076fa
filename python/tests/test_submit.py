import datetime
import json
import os
import stat
from pathlib import Path

import pytest
from fakespool import FakeSpool

import jobd
from jobd import handoff


def request_of(spool: FakeSpool, request_id: str) -> dict:
    return json.loads((spool.root / "new" / f"{request_id}.json").read_text())


def test_a_request_lands_whole_in_new_and_nothing_stays_in_tmp(spool: FakeSpool) -> None:
    request_id = jobd.submit(
        "long_report", "--month", "2026-10", env={"REPORT_LANG": "nl"}, spool_dir=spool.root
    )
    assert spool.files("new") == [f"{request_id}.json"]
    assert spool.files("tmp") == []
    assert request_of(spool, request_id) == {
        "task": "long_report",
        "id": request_id,
        "args": ["--month", "2026-10"],
        "env": {"REPORT_LANG": "nl"},
    }


def test_the_file_is_readable_by_the_spool_group_whatever_the_umask(spool: FakeSpool) -> None:
    old = os.umask(0o077)
    try:
        request_id = jobd.submit("bare", spool_dir=spool.root)
    finally:
        os.umask(old)
    mode = (spool.root / "new" / f"{request_id}.json").stat().st_mode
    assert stat.S_IMODE(mode) == 0o640


def test_default_ids_are_valid_distinct_and_sort_by_time(spool: FakeSpool) -> None:
    made = [jobd.submit("bare", spool_dir=spool.root) for _ in range(20)]
    assert made == sorted(made)
    assert len(set(made)) == 20
    assert all(jobd.ids.problem(i) is None for i in made)


def test_data_and_an_id_of_ones_own(spool: FakeSpool) -> None:
    data = {"user": 7, "items": [1, 2.5, None, "x"], "nested": {"ok": True}}
    assert jobd.submit("django_task", data=data, id="order-42", spool_dir=spool.root) == "order-42"
    assert request_of(spool, "order-42")["data"] == data


def test_delay_in_seconds_or_a_timedelta(spool: FakeSpool) -> None:
    a = jobd.submit("bare", delay=90, spool_dir=spool.root)
    b = jobd.submit("bare", delay=datetime.timedelta(minutes=5, milliseconds=250), spool_dir=spool.root)
    c = jobd.submit("bare", delay=0.0015, spool_dir=spool.root)
    assert request_of(spool, a)["delay"] == "90000ms"
    assert request_of(spool, b)["delay"] == "300250ms"
    assert request_of(spool, c)["delay"] == "2ms"


def test_run_at_is_written_in_utc(spool: FakeSpool) -> None:
    amsterdam = datetime.timezone(datetime.timedelta(hours=1))
    at = datetime.datetime(2026, 11, 27, 18, 0, 0, 123456, tzinfo=amsterdam)
    request_id = jobd.submit("bare", run_at=at, spool_dir=spool.root)
    assert request_of(spool, request_id)["run_at"] == "2026-11-27T17:00:00.123456Z"


def test_spool_dir_from_the_environment(spool: FakeSpool, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JOBD_SPOOL_DIR", str(spool.root))
    request_id = jobd.submit("bare")
    assert spool.files("new") == [f"{request_id}.json"]


def test_no_spool_dir_anywhere_says_where_to_set_one(spool: FakeSpool) -> None:
    with pytest.raises(jobd.SpoolError, match="JOBD_SPOOL_DIR"):
        jobd.submit("bare")


@pytest.mark.parametrize("missing", ["", "tmp", "new", "tasks.json"])
def test_without_a_layout_nothing_is_created(tmp_path: Path, missing: str) -> None:
    root = tmp_path / "spool"
    if missing:
        FakeSpool(root)
        target = root / missing
        if target.is_dir():
            target.rmdir()
        else:
            target.unlink()
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    with pytest.raises(jobd.SpoolMissing, match="start jobd once on this spool") as raised:
        jobd.submit("bare", spool_dir=root)
    assert "jobctl submit" in str(raised.value)
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before


REFUSALS = [
    (("lnog_report",), {}, "unknown task `lnog_report`: did you mean `long_report`? (the jobfile's tasks: bare, django_task, long_report)"),
    (("zzz",), {}, "unknown task `zzz` (the jobfile's tasks: bare, django_task, long_report)"),
    (("bare", "x"), {}, "task `bare` accepts no arguments (its `accept: args:` is empty): 1 given"),
    (("long_report", "--month", "2026-10", "--month", "2026-11", "--month"), {}, "accepts at most 4 arguments"),
    (("long_report", "--month", "October"), {}, "argument 2 `October` matches none of task `long_report`'s `accept: args:` patterns"),
    (("long_report", "--month", "2026-10x"), {}, "argument 2 `2026-10x` matches none"),
    (("long_report", "x--month"), {}, "argument 1 `x--month` matches none"),
    (("long_report", "--settings=evil"), {}, "argument 1 `--settings=evil` matches none"),
    (("long_report", "-a@b.c"), {}, "an argument starting with `-` only matches a pattern starting with `-`"),
    (("long_report", "2026-10\0"), {}, "argument 1 contains a NUL character"),
    (("long_report", 2026), {}, "argument 1 is int, not a string"),
    (("long_report",), {"env": {"LANG": "C"}}, "task `long_report` does not accept `LANG` from a file (its `accept: env:` is REPORT_LANG)"),
    (("bare",), {"env": {"X": "1"}}, "its `accept: env:` is empty"),
    (("long_report",), {"env": {"PATH": "/tmp"}}, "`PATH` may not be set by a spool file: it could change the program that runs"),
    (("long_report",), {"env": {"ld_preload": "x"}}, "`ld_preload` may not be set"),
    (("long_report",), {"env": {"PYTHONPATH": "x"}}, "`PYTHONPATH` may not be set"),
    (("long_report",), {"env": {"GCONV_PATH": "x"}}, "`GCONV_PATH` may not be set"),
    (("long_report",), {"env": {"DJANGO_SETTINGS_MODULE": "x"}}, "`DJANGO_SETTINGS_MODULE` may not be set"),
    (("long_report",), {"env": {"A=B": "x"}}, "not a variable name"),
    (("long_report",), {"data": {"x": 1}}, "task `long_report` does not accept `data` (it needs `accept: {data: true}`"),
    (("django_task",), {"data": {"when": datetime.date(2026, 1, 1)}}, "data is not JSON"),
    (("django_task",), {"data": float("nan")}, "data is not JSON"),
    (("bare",), {"id": "../etc/passwd"}, "id '../etc/passwd' is not valid: 1-128 characters of A-Z a-z 0-9 . _ -"),
    (("bare",), {"id": ".hidden"}, "is not valid"),
    (("bare",), {"id": "-rf"}, "is not valid"),
    (("bare",), {"id": "a/b"}, "is not valid"),
    (("bare",), {"id": "a\0b"}, "is not valid"),
    (("bare",), {"id": ""}, "is not valid"),
    (("bare",), {"id": "é"}, "is not valid"),
    (("bare",), {"id": "x" * 129}, "is not valid"),
    (("bare",), {"id": "report.result"}, "may not end in .result"),
    (("bare",), {"id": 42}, "an id is a string"),
    (("bare",), {"delay": 5, "run_at": datetime.datetime.now(datetime.timezone.utc)}, "give delay or run_at, not both"),
    (("bare",), {"run_at": datetime.datetime(2026, 1, 1)}, "run_at must be timezone-aware"),
    (("bare",), {"run_at": "2026-01-01T00:00:00Z"}, "run_at is a datetime, not str"),
    (("bare",), {"delay": -1}, "delay must be from 0"),
    (("bare",), {"delay": float("inf")}, "delay must be from 0"),
    (("bare",), {"delay": "5m"}, "delay is seconds (a number) or a timedelta, not str"),
    (("bare",), {"delay": True}, "not bool"),
    (("django_task",), {"data": "x" * (1024 * 1024)}, "more than the 1048576 a spool file may have"),
]


@pytest.mark.parametrize(("args", "kwargs", "words"), REFUSALS)
def test_what_jobd_would_refuse_is_refused_before_anything_is_written(
    spool: FakeSpool, args: tuple, kwargs: dict, words: str
) -> None:
    with pytest.raises(jobd.SubmitError) as raised:
        jobd.submit(*args, spool_dir=spool.root, **kwargs)
    assert words in str(raised.value)
    assert isinstance(raised.value, ValueError)
    assert spool.files("new") == []
    assert spool.files("tmp") == []


def test_check_refuses_the_same_and_writes_nothing(spool: FakeSpool) -> None:
    with pytest.raises(jobd.SubmitError, match="unknown task"):
        jobd.check("nope", spool_dir=spool.root)
    request_id = jobd.check("long_report", "--month", "2026-10", spool_dir=spool.root)
    assert jobd.ids.problem(request_id) is None
    assert jobd.check("bare", id="mine", spool_dir=spool.root) == "mine"
    assert spool.files("new") == [] and spool.files("tmp") == []


def test_the_arguments_total_size_is_bounded(spool: FakeSpool) -> None:
    tasks = {"t": {"accept": {"args": [".*"], "max_args": 16}}}
    spool.write_tasks(tasks, limits={"max_args_bytes": 10})
    jobd.submit("t", "12345", "é123", spool_dir=spool.root)  # 10 bytes: é is two
    assert len(spool.files("new")) == 1
    with pytest.raises(jobd.SubmitError, match="the arguments are 11 bytes together, more than the 10"):
        jobd.submit("t", "12345", "é1234", spool_dir=spool.root)


def test_an_id_in_use_is_refused_wherever_it_is(spool: FakeSpool) -> None:
    jobd.submit("bare", id="once", spool_dir=spool.root)
    with pytest.raises(jobd.SubmitError, match="already in use"):
        jobd.submit("bare", id="once", spool_dir=spool.root)
    spool.result("done", "finished")
    with pytest.raises(jobd.SubmitError, match="done/finished.json"):
        jobd.submit("bare", id="finished", spool_dir=spool.root)


def test_a_pattern_python_cannot_read_is_left_to_jobd(spool: FakeSpool) -> None:
    spool.write_tasks({"t": {"accept": {"args": [r"\p{L}+"]}}})
    jobd.submit("t", "Ångström", spool_dir=spool.root)
    spool.write_tasks({"t": {"accept": {"args": [r"\p{L}+", "-v"]}}})
    with pytest.raises(jobd.SubmitError, match="matches none"):
        jobd.submit("t", "--verbose", spool_dir=spool.root)


def test_a_failed_write_leaves_nothing_behind(spool: FakeSpool, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_rename(source: object, target: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(handoff.os, "rename", no_rename)
    with pytest.raises(jobd.SpoolError, match="No space left on device"):
        jobd.submit("bare", spool_dir=spool.root)
    assert spool.files("tmp") == [] and spool.files("new") == []


def test_an_unwritable_spool_says_who_must_be_in_its_group(
    spool: FakeSpool, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_open = os.open

    def refused(path: os.PathLike[str], *args: int) -> int:
        if Path(path).parent.name == "tmp":
            raise PermissionError(13, "Permission denied")
        return real_open(path, *args)

    # As root the folder's mode would not stop the write: refuse it the way the kernel does.
    monkeypatch.setattr(handoff.os, "open", refused)
    with pytest.raises(jobd.SpoolError) as raised:
        jobd.submit("bare", spool_dir=spool.root)
    assert str(raised.value) == (
        f"cannot write into {spool.root / 'tmp'}: Permission denied: this user must be in the "
        "spool's group (`spool: group:` in jobd.yaml) and listed in spool.allow_users or allow_groups"
    )


@pytest.mark.parametrize(
    ("document", "words"),
    [
        ("{", "is not JSON"),
        ('{"version": 2, "tasks": {}}', "version 2, and this package reads version 1"),
        ('{"version": 1, "tasks": []}', "`tasks` is not a mapping"),
        ('{"version": 1, "tasks": {"t": {"accept": {"args": "x"}}}}', "accept`.args is not a list of strings"),
        ('{"version": 1, "tasks": {"t": {"accept": {"data": "yes"}}}}', "accept.data` is not true or false"),
    ],
)
def test_a_damaged_tasks_json_is_named(spool: FakeSpool, document: str, words: str) -> None:
    (spool.root / "tasks.json").write_text(document)
    with pytest.raises(jobd.SpoolError, match="tasks.json") as raised:
        jobd.submit("t", spool_dir=spool.root)
    assert words in str(raised.value)


def test_check_refuses_an_id_in_use_too(spool: FakeSpool) -> None:
    jobd.submit("bare", id="twice", spool_dir=spool.root)
    with pytest.raises(jobd.SubmitError, match="already in use"):
        jobd.check("bare", id="twice", spool_dir=spool.root)
