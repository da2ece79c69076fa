"""Raises when run: an uncaught exception in a -m module."""

raise LookupError("nothing here")
