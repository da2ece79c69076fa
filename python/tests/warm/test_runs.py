"""What a warm run prints, exits with and sees, against the same command run cold."""

import json
import signal
from pathlib import Path

import pytest

from harness import PROJECT, base_env, cold


@pytest.fixture
def django_server(start_server):
    server = start_server(["django"])
    assert server.hello(["django"])["op"] == "ready"
    return server


@pytest.mark.parametrize("argv", [
    ["manage.py", "greet", "ann"],
    ["manage.py", "greet", "ann", "--code", "3"],
    ["manage.py", "greet", "ann", "--message", "out of stock"],
    ["manage.py", "no_such_command"],
    ["manage.py", "check"],
    ["-m", "plain.no_such_module"],
    ["-m", "plain.finalizes"],
    ["scripts/report.py", "exit", "4"],
    ["scripts/no_such_script.py"],
], ids=["ok", "exit-3", "exit-message", "unknown-command", "check", "unknown-module",
        "threads-and-atexit", "script-exit", "no-script"])
def test_warm_output_and_status_are_the_cold_ones(django_server, argv):
    warm = django_server.run(argv)
    expected = cold(argv)
    assert (warm.code, warm.stdout, warm.stderr) == (
        expected.returncode, expected.stdout, expected.stderr)


def test_a_system_check_warning_is_printed_before_every_command(start_server):
    env = {"WARM_TEST_CHECK_WARNING": "1"}
    server = start_server(["django"], env=env)
    assert server.hello(["django"])["op"] == "ready"
    for _ in range(2):
        warm = server.run(["manage.py", "greet", "ann"], env=base_env(**env))
        expected = cold(["manage.py", "greet", "ann"], env=base_env(**env))
        assert "?: (shop.W001) asked to warn" in warm.stderr
        assert (warm.code, warm.stdout, warm.stderr) == (
            expected.returncode, expected.stdout, expected.stderr)


@pytest.mark.parametrize("argv", [["scripts/report.py", "raise"], ["-m", "plain.raises"]])
def test_an_uncaught_exception_in_a_script_or_module_prints_the_cold_traceback(django_server,
                                                                               argv):
    warm = django_server.run(argv)
    expected = cold(argv)
    assert (warm.code, warm.stdout, warm.stderr) == (
        expected.returncode, expected.stdout, expected.stderr)


@pytest.mark.parametrize("argv", [["manage.py", "boom"], ["scripts/report.py", "raise"]])
def test_an_uncaught_exception_exits_1_with_its_traceback(django_server, argv):
    warm = django_server.run(argv)
    expected = cold(argv)
    assert warm.code == expected.returncode == 1
    assert warm.stdout == expected.stdout
    assert warm.stderr.startswith("Traceback (most recent call last):\n")
    assert "jobd/warm" not in warm.stderr  # the server's frames are not the run's
    # The run's own frames: all of a script's, a command's from Django's entry point on
    # (a cold run's also show manage.py's two lines above it).
    tail = warm.stderr.split("\n")[1:]
    assert expected.stderr.endswith("\n".join(tail))


def test_the_environment_is_the_runs_whole_and_the_workdir_its_own(django_server, tmp_path):
    env = base_env(ONLY_HERE="1")
    argv = [str(PROJECT / "manage.py"), "state"]
    warm = django_server.run(argv, env=env, cwd=tmp_path, stdin=b"to stdin")
    expected = cold(argv, env=env, cwd=tmp_path)
    seen = json.loads(warm.stdout)
    # Django's settings set TZ (from TIME_ZONE) in a cold run too.
    assert seen["env"] == {**env, "TZ": "Europe/Amsterdam"} == json.loads(expected.stdout)["env"]
    assert seen["cwd"] == str(tmp_path)
    assert seen["tzname"] == "CET"
    assert seen["stdin"] == "to stdin"
    assert seen["argv"] == argv
    cold_seen = json.loads(expected.stdout)
    for key in ("stdout_line_buffering", "stderr_line_buffering", "fds", "tzname"):
        assert seen[key] == cold_seen[key], key
    assert seen["fds"] == [0, 1, 2, 3]  # 3: the listing of /proc/self/fd itself


def test_a_variable_the_preload_set_is_in_every_run(start_server):
    server = start_server(["plain.sets_env"])
    assert server.hello(["plain.sets_env"])["op"] == "ready"
    env = base_env(ONLY_HERE="1")
    seen = json.loads(server.run(["-m", "plain.bump"], env=env).stdout)
    assert seen["env"] == {**env, "SET_BY_PRELOAD": "yes"}


def test_module_runs_as_python_m(django_server, tmp_path):
    warm = django_server.run(["-m", "plain.bump", "a", "b"], cwd=PROJECT)
    seen = json.loads(warm.stdout)
    assert warm.code == 0
    assert seen["argv"] == [str(PROJECT / "plain" / "bump.py"), "a", "b"]
    assert seen["name"] == "__main__"
    assert seen["path0"] == str(PROJECT)
    expected = json.loads(cold(["-m", "plain.bump", "a", "b"]).stdout)
    # The cold module never loads Django's settings, which set TZ in the server.
    expected["env"]["TZ"] = "Europe/Amsterdam"
    assert seen == {**expected, "random": seen["random"]}


def test_script_runs_as_python_path_with_its_directory_first_in_sys_path(django_server, tmp_path):
    argv = [str(PROJECT / "scripts" / "report.py"), "x"]
    warm = django_server.run(argv, cwd=tmp_path)
    assert warm.code == 0, warm.stderr
    seen = json.loads(warm.stdout)
    assert seen == {"argv": argv, "sibling": "sibling", "name": "__main__",
                    "file": str(PROJECT / "scripts" / "report.py")}
    assert seen == json.loads(cold(argv, cwd=tmp_path).stdout)


def test_output_written_just_before_exit_reaches_the_pipe(django_server):
    # print() without flush to a pipe is block-buffered, as in a cold run; the child
    # must flush before it exits.
    warm = django_server.run(["-m", "plain.bump"])
    assert warm.stdout.endswith("}\n")


def test_an_uncaught_keyboard_interrupt_ends_the_run_by_sigint(django_server):
    warm = django_server.run(["-m", "plain.interrupted"])
    expected = cold(["-m", "plain.interrupted"])
    assert expected.returncode == -signal.SIGINT
    assert (warm.signal, warm.stderr) == (signal.SIGINT, expected.stderr)
