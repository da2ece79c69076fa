"""A script run by path: its sibling module imports (sys.path[0] is its directory)."""

import json
import sys

import sibling

print(json.dumps({"argv": sys.argv, "sibling": sibling.NAME, "name": __name__,
                  "file": __file__}))
if len(sys.argv) > 1 and sys.argv[1] == "raise":
    raise KeyError("missing")
if len(sys.argv) > 1 and sys.argv[1] == "exit":
    sys.exit(int(sys.argv[2]))
