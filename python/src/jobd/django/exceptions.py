"""Exceptions named in task results (TaskError.exception_class_path): importable
without Django's task framework, so that `TaskError.exception_class` resolves."""


class AttemptFailed(Exception):
    """An attempt that ended without a Python exception to report: it timed out, was
    killed, could not start, or jobd stopped or died while it ran. The TaskError's
    traceback says which, with the attempt's last output lines."""


class RequestRefused(Exception):
    """jobd refused the request before running it; the TaskError's traceback holds
    jobd's reason."""
