"""Hand one-off jobs to jobd and read what became of them.

    import jobd

    request_id = jobd.submit("long_report", "--month", "2026-10", delay=90)
    jobd.result(request_id).state      # "delayed", later "running", "done" ...

A request is a small JSON file written into jobd's spool directory the safe way
(into tmp/, flushed, renamed into new/): no broker, no database, and it waits there
while jobd is down. What jobd would refuse is refused here first, in jobd's words,
from the spool's tasks.json. `jobd.django` runs Django's task framework on jobd.
"""

from .errors import JobdError, ResultNotFound, SpoolError, SpoolMissing, SubmitError
from .results import Attempt, Result, State, result
from .submission import check, submit

__all__ = [
    "Attempt",
    "JobdError",
    "Result",
    "ResultNotFound",
    "SpoolError",
    "SpoolMissing",
    "State",
    "SubmitError",
    "check",
    "result",
    "submit",
]
