"""A preload entry that sets an environment variable, as Django's settings set TZ."""

import os

os.environ["SET_BY_PRELOAD"] = "yes"
