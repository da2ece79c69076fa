"""Leaves a non-daemon thread and an atexit handler: a cold interpreter waits for the
one and runs the other before it exits, and so must a warm child."""

import atexit
import threading
import time


def late() -> None:
    time.sleep(0.2)
    print("thread done")


atexit.register(print, "atexit ran")
threading.Thread(target=late).start()
print("main done")
