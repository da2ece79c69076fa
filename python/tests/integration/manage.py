#!/usr/bin/env python3
"""The integration tests' project: what jobd runs as `manage.py jobd_task`."""

import os
import sys

if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "itsite.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)
