"""An uncaught KeyboardInterrupt: Python then ends by SIGINT."""

raise KeyboardInterrupt
