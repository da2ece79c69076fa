"""A preload entry that starts a thread and leaves it running."""

import threading
import time

threading.Thread(target=time.sleep, args=(3600,), name="left-behind", daemon=True).start()
