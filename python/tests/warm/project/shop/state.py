"""A module-level value a run changes: the next run must see it fresh."""

VALUE = 0
