"""Changes a module-level value and prints what this run sees."""

import json
import os
import random
import sys

from plain import counter

counter.VALUE += 1
print(json.dumps({"value": counter.VALUE, "random": random.random(), "argv": sys.argv,
                  "path0": sys.path[0], "name": __name__, "env": dict(os.environ),
                  "cwd": os.getcwd()}))
