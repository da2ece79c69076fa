"""`manage.py jobd_status`: scheduled and one-off jobs, from jobd or from its spool."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from django.utils import timezone

from jobd.django import places, present
from jobd.overview import overview


class Command(BaseCommand):
    help = (
        "Show jobd's scheduled jobs (from its control socket, JOBD_SOCKET) and its one-off "
        "jobs by state (from the spool folders), and which source each came from."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--socket", help="jobd's control socket (default: JOBD_SOCKET)")
        parser.add_argument(
            "--spool", help="the spool directory (default: the JobdBackend's, or JOBD_SPOOL_DIR)"
        )
        parser.add_argument(
            "--recent", type=int, default=10, help="one-off jobs shown per folder (default 10)"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        seen = overview(
            options["socket"] or places.socket_path(),
            options["spool"] or places.spool_dir(),
            recent=options["recent"],
        )
        now = timezone.now()
        out = [f"source: {seen.source}"]
        out += [line for line in (present.daemon_line(seen),) if line]
        out += [f"PROBLEM: {problem}" for problem in seen.problems]
        jobs = present.job_lines(seen, now)
        if jobs is not None:
            out += ["", "scheduled jobs, overdue and failing first:"]
            out += _table(
                ["JOB", "SCHEDULE", "NEXT", "LAST", "RESULT", "RUNNING"],
                [[j.name, j.schedule, j.next, j.last, j.result, str(j.running)] for j in jobs],
            )
        out += ["", "one-off jobs" + (f" in {seen.spool_dir}" if seen.spool_dir else "") + ":"]
        if seen.spool_error:
            out.append(f"  cannot read the spool: {seen.spool_error}")
        counts = present.counts_line(seen)
        if counts:
            out.append(f"  {counts}")
        for folder in present.folder_views(seen, now):
            out.append(f"  {folder.title}: {folder.count}")
            if folder.lines:
                rows = [[o.id, o.state, o.task, o.detail] for o in folder.lines]
                out += ["    " + line for line in _table(["ID", "STATE", "TASK", "DETAIL"], rows)]
        self.stdout.write("\n".join(out))


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(r[c]) for r in [header, *rows]) for c in range(len(header))]
    return [
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in [header, *rows]
    ]
