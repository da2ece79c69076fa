"""The benchmark behind `run`: one Django project, two backends, the same task."""

from __future__ import annotations

import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
# Tasks enqueued one at a time, each waited for (the latency), and at once (the
# throughput); fewer with BENCH_SAMPLES and BENCH_BATCH on a busy machine, where a
# cold Django start per task can take seconds.
SAMPLES = int(os.environ.get("BENCH_SAMPLES", "50"))
BATCH = int(os.environ.get("BENCH_BATCH", "500"))
WORKERS = 2
PATIENCE = 3600.0

JOBFILE = """\
state_dir: {work}/jobd-state
socket: {work}/jobd.sock
shutdown_grace: 5s
defaults:
  workdir: {here}
spool:
  dir: {work}/spool
  workers: {workers}
tasks:
  django_task:
    command: [{python}, manage.py, jobd_task]
    accept: {{data: true}}
"""

# The same task as a fork of a warm runtime's server, which imported Django once.
WARM = """\
runtimes:
  django:
    command: [{python}, -m, jobd.warm]
    env: {{DJANGO_SETTINGS_MODULE: benchsite.settings}}
    preload: [django]
"""


class Entries:
    """The entry log the task appends to: token → when its function was entered."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.seen: dict[str, float] = {}
        self.offset = 0

    def read(self) -> None:
        if not self.path.exists():
            return
        with self.path.open("rb") as log:
            log.seek(self.offset)
            data = log.read()
        complete = data.rfind(b"\n") + 1
        self.offset += complete
        for line in data[:complete].decode().splitlines():
            token, at = line.split()
            self.seen[token] = float(at)

    def wait(self, tokens: list[str], processes: list[subprocess.Popen[bytes]]) -> None:
        deadline = time.monotonic() + PATIENCE
        while True:
            self.read()
            if all(t in self.seen for t in tokens):
                return
            for process in processes:
                if process.poll() is not None:
                    raise RuntimeError(f"{process.args[0]} exited with {process.returncode}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"waited {PATIENCE:g}s for {len(tokens)} tasks")
            time.sleep(0.002)


def stop(processes: list[subprocess.Popen[bytes]]) -> None:
    """SIGTERM to exactly these processes, then SIGKILL to any still there."""
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    for process in processes:
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def measure(name: str, alias: str, processes: list[subprocess.Popen[bytes]], log: Path) -> dict[str, Any]:
    from benchsite.tasks import entered

    task = entered.using(backend=alias)
    entries = Entries(log)
    # Warm-up: every worker up and its caches filled, outside the figures.
    warm = [f"{alias}-warm-{i}" for i in range(WORKERS * 2)]
    for token in warm:
        task.enqueue(token)
    entries.wait(warm, processes)

    latencies = []
    for i in range(SAMPLES):
        token = f"{alias}-one-{i}"
        started = time.time()
        task.enqueue(token)
        entries.wait([token], processes)
        latencies.append(entries.seen[token] - started)

    tokens = [f"{alias}-batch-{i}" for i in range(BATCH)]
    started = time.time()
    for token in tokens:
        task.enqueue(token)
    enqueued = time.time() - started
    entries.wait(tokens, processes)
    last = max(entries.seen[t] for t in tokens) - started
    return {
        "name": name,
        "median": statistics.median(latencies),
        "p99": statistics.quantiles(latencies, n=100)[98],
        "enqueue": enqueued,
        "all": last,
        "rate": BATCH / last,
    }


def db_worker(work: Path, env: dict[str, str]) -> dict[str, Any]:
    workers = [
        subprocess.Popen(
            [sys.executable, "manage.py", "db_worker", "--interval", "1", "--no-startup-delay", "--no-reload"],
            cwd=HERE,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=(work / f"db_worker-{i}.log").open("wb"),
        )
        for i in range(WORKERS)
    ]
    try:
        return measure(
            f"django-tasks-db db_worker ({WORKERS} processes, SQLite, --interval 1)",
            "default",
            workers,
            work / "entered.log",
        )
    finally:
        stop(workers)


def jobd(binary: str, work: Path, env: dict[str, str], warm: bool) -> dict[str, Any] | str:
    jobfile = work / ("jobd-warm.yaml" if warm else "jobd-cold.yaml")
    # The same spool, state and entry log as the run before: start the log afresh.
    (work / "entered.log").unlink(missing_ok=True)
    text = JOBFILE.format(work=work, here=HERE, python=sys.executable, workers=WORKERS)
    if warm:
        text = WARM.format(python=sys.executable) + text.replace(
            f"command: [{sys.executable}, manage.py, jobd_task]",
            "runtime: django\n    command: [manage.py, jobd_task]",
        )
    jobfile.write_text(text)
    log = work / "jobd.log"
    daemon = subprocess.Popen(
        [binary, "-c", str(jobfile)], env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT
    )
    try:
        deadline = time.monotonic() + 60
        while not (work / "spool" / "tasks.json").exists():
            if daemon.poll() is not None or time.monotonic() > deadline:
                tail = log.read_text(errors="replace").strip().splitlines()[-3:]
                return "not measured: this jobd did not start a spool with tasks.json: " + " | ".join(tail)
            time.sleep(0.05)
        if warm:
            # Runs start cold until the server has imported Django: wait for it.
            while "is ready" not in log.read_text(errors="replace"):
                if daemon.poll() is not None or time.monotonic() > deadline:
                    return "not measured: the warm runtime's server never got ready"
                time.sleep(0.05)
        what = "a fork of a warm server" if warm else "a fresh manage.py jobd_task"
        return measure(
            f"jobd ({WORKERS} workers, {what} per task)",
            "jobd",
            [daemon],
            work / "entered.log",
        )
    finally:
        stop([daemon])


def main() -> None:
    binary = sys.argv[1]
    work = Path(tempfile.mkdtemp(prefix="jobd-bench-"))
    env = {
        **os.environ,
        "BENCH_DIR": str(work),
        "DJANGO_SETTINGS_MODULE": "benchsite.settings",
        "PYTHONPATH": str(HERE),
    }
    os.environ.update(env)
    sys.path.insert(0, str(HERE))
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0)
    print(
        f"{os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}; Python {sys.version.split()[0]}, "
        f"Django {django.get_version()}; jobd {binary}"
    )
    print(
        f"latency: enqueue() → task function entered, {SAMPLES} tasks one at a time; "
        f"throughput: {BATCH} tasks enqueued at once, {WORKERS} workers\n"
    )
    try:
        results = [
            db_worker(work, env),
            jobd(binary, work, env, warm=False),
            jobd(binary, work, env, warm=True),
        ]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    header = f"{'':62} {'median':>8} {'p99':>8} {'enqueue ' + str(BATCH):>12} {'all entered':>12} {'tasks/s':>8}"
    print(header)
    for row in results:
        if isinstance(row, str):
            print(f"{'jobd':62} {row}")
            continue
        print(
            f"{row['name']:62} {row['median']:7.3f}s {row['p99']:7.3f}s "
            f"{row['enqueue']:11.2f}s {row['all']:11.2f}s {row['rate']:8.1f}"
        )
    print(
        "\ndb_worker polls its table every --interval (1 s, its default) while idle; jobd "
        "hears of a file at once (inotify) and starts a process per task: a fresh Python "
        "and Django, or a fork of a warm runtime's server."
    )


if __name__ == "__main__":
    main()
