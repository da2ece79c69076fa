"""Imported by the preload (an app's tasks module); remembers which process did it."""

import os

IMPORTED_BY = os.getpid()
