"""Request ids: what the spool accepts as one, and the package's own."""

from __future__ import annotations

import re
import secrets

from . import times

# The spool's id grammar: nothing in it can name a folder (`/`), climb out of one
# (`..`, which starts with a dot), hide a file (a leading dot) or pass for an option.
_ID = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]*")
_RESULT_TAIL = ".result"
MAX_ID_CHARS = 128
GRAMMAR = "1-{max} characters of A-Z a-z 0-9 . _ -, not starting with . or -"


def problem(value: object, max_chars: int = MAX_ID_CHARS) -> str | None:
    """Why `value` is not an id jobd accepts, or None when it is one."""
    if not isinstance(value, str):
        return f"an id is a string, not {type(value).__name__}"
    grammar = GRAMMAR.format(max=max_chars)
    if not _ID.fullmatch(value) or len(value) > max_chars:
        return f"id {value!r} is not valid: {grammar}"
    if value.endswith(_RESULT_TAIL):
        # Its file would be `….result.json`, a name jobd keeps for results.
        return f"id {value!r} is not valid: an id may not end in {_RESULT_TAIL}"
    return None


def file_name(request_id: str) -> str:
    return f"{request_id}.json"


def new_id() -> str:
    """A random id that sorts by submission time: the UTC instant, then 48 random bits."""
    return f"{times.now():%Y%m%dT%H%M%S%fZ}-{secrets.token_hex(6)}"
