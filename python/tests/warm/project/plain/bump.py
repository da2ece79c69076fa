import json
import random
import sys

from plain import counter

counter.VALUE += 1
print(json.dumps({"value": counter.VALUE, "random": random.random(), "argv": sys.argv,
                  "path0": sys.path[0], "name": __name__}))
