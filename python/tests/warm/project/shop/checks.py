"""A system check that warns when WARM_TEST_CHECK_WARNING is set: a cold run prints the
warning before every command, and so must a warm one."""

import os

from django.core import checks


@checks.register()
def warn_when_asked(app_configs, **kwargs):
    if os.environ.get("WARM_TEST_CHECK_WARNING"):
        return [checks.Warning("asked to warn", id="shop.W001")]
    return []
