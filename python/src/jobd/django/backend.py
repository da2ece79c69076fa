"""JobdBackend: Django's task framework with jobd as its worker."""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from functools import partial
from typing import Any

from django.core import checks
from django.core.exceptions import ImproperlyConfigured
from django.db import transaction
from django.utils import timezone

from .. import ids, submission
from ..catalog import load as load_catalog
from ..errors import JobdError, ResultNotFound, SpoolMissing
from ..results import result as read_result
from ..spool import locate
from . import compat, mapping, tasks
from .payload import Payload, json_problem

_OPTIONS = ("task", "queues", "spool_dir", "enqueue_on_commit", "transport", "database")
_TRANSPORTS = ("spool", "database")
DEFAULT_JOBD_TASK = "django_task"


class JobdBackend(compat.BaseTaskBackend):
    """Each enqueued Task becomes a spool request for a jobd task that runs
    `manage.py jobd_task` (`accept: {data: true}` in jobd.yaml).

    OPTIONS:
      task               the jobd task for every queue (default "django_task"), or
      queues             {queue_name: jobd task}: each queue its own timeout, retries,
                         max_instances; its keys are the backend's queues
      spool_dir          jobd's `spool: dir:` (default: JOBD_SPOOL_DIR, setting or env)
      enqueue_on_commit  hand off when the current transaction commits, and not at all
                         if it rolls back: the task must not run before the rows it
                         reads are committed, nor for a request that was undone
      transport          "spool" (the default: a file in the spool) or "database"
                         (cluster mode: a row of jobd's table, inserted on Django's
                         connection in the current transaction, so that the job exists
                         if and only if the transaction commits; `get_result` reads the
                         row)
      database           with "database": the alias of the connection to use
                         (default "default"), the cluster's PostgreSQL
    """

    supports_defer = True
    supports_async_task = True
    supports_get_result = True
    supports_priority = False

    def __init__(self, alias: str, params: Mapping[str, Any]) -> None:
        super().__init__(alias, params)
        where = f"TASKS[{alias!r}]['OPTIONS']"
        unknown = sorted(set(self.options) - set(_OPTIONS))
        if unknown:
            raise ImproperlyConfigured(
                f"{where} has {', '.join(map(repr, unknown))}: JobdBackend reads "
                + ", ".join(_OPTIONS)
            )
        queues = self.options.get("queues")
        if queues is not None:
            if "task" in self.options:
                raise ImproperlyConfigured(
                    f"{where} has both 'task' (one jobd task for every queue) and 'queues' "
                    "(a jobd task per queue): give one"
                )
            if not queues or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in queues.items()
            ):
                raise ImproperlyConfigured(f"{where}['queues'] maps queue names to jobd task names")
            if "QUEUES" in params and set(params["QUEUES"]) != set(queues):
                raise ImproperlyConfigured(
                    f"TASKS[{alias!r}]['QUEUES'] differs from the queues of {where}['queues']: "
                    "leave QUEUES out"
                )
            self.queues = set(queues)
        self.jobd_tasks: dict[str, str] = dict(queues or {})
        self.default_jobd_task: str = self.options.get("task", DEFAULT_JOBD_TASK)
        self.spool_dir = self.options.get("spool_dir")
        self.enqueue_on_commit = bool(self.options.get("enqueue_on_commit", False))
        self.transport: str = self.options.get("transport", "spool")
        if self.transport not in _TRANSPORTS:
            raise ImproperlyConfigured(
                f"{where}['transport'] is {self.transport!r}: use 'spool' or 'database'"
            )
        if self.transport == "database" and self.enqueue_on_commit:
            raise ImproperlyConfigured(
                f"{where} has 'enqueue_on_commit' with 'transport': 'database': the row "
                "is part of the transaction already, and exists only if it commits; "
                "leave enqueue_on_commit out"
            )
        self.database: str = self.options.get("database", "default")

    def jobd_task(self, queue_name: str) -> str:
        """The jobd task that runs this queue's Tasks."""
        return self.jobd_tasks.get(queue_name, self.default_jobd_task)

    def validate_task(self, task: Any) -> None:
        super().validate_task(task)
        if task.run_after is not None and not timezone.is_aware(task.run_after):
            raise compat.InvalidTask(
                "run_after must be an aware datetime: jobd needs an instant "
                "(django.utils.timezone.now() + ...)"
            )

    def enqueue(self, task: Any, args: Any, kwargs: Any) -> Any:
        self.validate_task(task)
        args, kwargs = list(args), dict(kwargs)
        problem = json_problem(args, "args") or json_problem(kwargs, "kwargs")
        if problem:
            raise TypeError(f"cannot enqueue {task.module_path}: {problem}")
        payload = Payload(task.module_path, args, kwargs, task.queue_name, self.alias)
        jobd_task = self.jobd_task(task.queue_name)
        request: dict[str, Any] = {
            "data": payload.to_data(),
            "run_at": task.run_after.astimezone(datetime.timezone.utc) if task.run_after else None,
            "id": ids.new_id(),
            "spool_dir": self.spool_dir,
        }
        if self.transport == "database":
            request_id = submission.submit(jobd_task, connection=self._connection(), **request)
        elif self.enqueue_on_commit:
            # Checked now, where the caller can still act on a refusal; handed off once
            # the rows the task needs are there for it to read.
            request_id = submission.check(jobd_task, **request)
        else:
            request_id = submission.submit(jobd_task, **request)
        result = compat.TaskResult(
            task=task,
            id=request_id,
            status=compat.TaskResultStatus.READY,
            enqueued_at=None,
            started_at=None,
            finished_at=None,
            last_attempted_at=None,
            args=args,
            kwargs=kwargs,
            backend=self.alias,
            errors=[],
            worker_ids=[],
        )
        if self.enqueue_on_commit:
            transaction.on_commit(partial(self._hand_off, result, jobd_task, request))
        else:
            self._enqueued(result)
        return result

    def _hand_off(self, result: Any, jobd_task: str, request: dict[str, Any]) -> None:
        submission.submit(jobd_task, **request)
        self._enqueued(result)

    def _enqueued(self, result: Any) -> None:
        object.__setattr__(result, "enqueued_at", timezone.now())
        compat.task_enqueued.send(type(self), task_result=result)

    def _connection(self) -> Any:
        from django.db import connections

        return connections[self.database]

    def get_result(self, result_id: str) -> Any:
        try:
            if self.transport == "database":
                found = read_result(result_id, connection=self._connection())
            else:
                found = read_result(result_id, spool_dir=self.spool_dir)
                if found.state == "forwarded":
                    # A cluster host sent the file on to its table: the row says the rest.
                    found = read_result(result_id, connection=self._connection())
        except ValueError as e:
            raise compat.TaskResultDoesNotExist(f"{result_id!r}: {e}") from e
        except ResultNotFound as e:
            raise compat.TaskResultDoesNotExist(str(e)) from e
        try:
            payload = Payload.from_data(found.data)
        except ValueError as e:
            raise compat.TaskResultDoesNotExist(
                f"{result_id!r} is a jobd request for task `{found.task}`, not a Django "
                f"task's: {e}"
            ) from e
        task = tasks.load(payload)
        return mapping.task_result(task, self.alias, found, payload.args, payload.kwargs)

    def check(self, **kwargs: Any) -> list[Any]:
        """The jobd tasks this backend names, as the spool's tasks.json knows them."""
        where = f"TASKS[{self.alias!r}]"
        try:
            spool = locate(self.spool_dir)
            spool.require_layout()
            catalog = load_catalog(spool)
        except SpoolMissing:
            return []  # jobd has not run on this machine (a developer's, CI's)
        except JobdError as e:
            if self.transport == "database":
                return []  # a web host of a cluster need not have a spool
            return [checks.Warning(str(e), obj=where, id="jobd.W001")]
        found = []
        for name in sorted(set(self.jobd_tasks.values()) or {self.default_jobd_task}):
            info = catalog.tasks.get(name)
            if info is None:
                found.append(
                    checks.Error(
                        f"jobd has no task `{name}` (by {spool.tasks_json})",
                        hint=f"add `{name}:` to `tasks:` in jobd.yaml, running "
                        "`manage.py jobd_task`, with `accept: {data: true}`",
                        obj=where,
                        id="jobd.E001",
                    )
                )
            elif not info.accept.data:
                found.append(
                    checks.Error(
                        f"jobd's task `{name}` does not accept data (by {spool.tasks_json})",
                        hint="add `accept: {data: true}` to it in jobd.yaml",
                        obj=where,
                        id="jobd.E002",
                    )
                )
        return found
