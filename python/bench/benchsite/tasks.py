import os
import time

from django.conf import settings
from django.tasks import task


@task()
def entered(token: str) -> None:
    """Log when the function was entered: one short append, atomic between workers."""
    line = f"{token} {time.time()}\n".encode()
    fd = os.open(os.path.join(settings.BENCH_DIR, "entered.log"), os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)
