"""A module-level value, changed by a run (python -m plain.bump)."""

VALUE = 0
