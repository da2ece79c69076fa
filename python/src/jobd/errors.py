"""The errors the package raises, each saying what went wrong and where."""


class JobdError(Exception):
    """Base class of the package's own errors."""


class SpoolError(JobdError):
    """The spool cannot be used: not configured, unreadable, or not writable by this user."""


class SpoolMissing(SpoolError):
    """The spool has no layout (tmp/, new/, tasks.json): jobd has never run on it.

    A client never makes the layout itself: jobd creates it with the modes and the
    group its submitters need, and a half-made one would be wrong for both.
    """


class SubmitError(JobdError, ValueError):
    """A request that jobd would refuse, refused before anything is written."""


class ResultNotFound(JobdError, LookupError):
    """No request with this id is in the spool (never submitted, or already pruned)."""
