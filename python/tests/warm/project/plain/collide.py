"""Opens files, so they get the numbers the server's descriptors had, then does what
could write into them through a descriptor the child inherited: a logging record to
the preload's handlers, a signal with a Python handler (the server's wakeup fd).
Prints each file's size: all must stay 0."""

import json
import logging
import os
import signal
import sys

directory = sys.argv[1]
paths = [os.path.join(directory, f"file{i}") for i in range(12)]
fds = [os.open(p, os.O_RDWR | os.O_CREAT, 0o600) for p in paths]
signal.signal(signal.SIGUSR1, lambda *_: None)
os.kill(os.getpid(), signal.SIGUSR1)
logging.getLogger("shop").warning("collide logged")
for handler in logging.getLogger("shop").handlers:
    handler.flush()
print(json.dumps({"fds": fds, "sizes": [os.fstat(fd).st_size for fd in fds]}))
