"""What Django needs from the server: its preload, and a child's clean break from the
server's database connections.

Django is imported by name at run time, so the server needs it only when a preload or a
run does; and mypy sees it as Any, since Django ships no type information.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from typing import Any


def preload() -> None:
    """django.setup(), every management command, every app's `tasks` module, and one
    pass of the system checks, so that a child imports none of them."""
    importlib.import_module("django").setup()
    management = importlib.import_module("django.core.management")
    for name, app in management.get_commands().items():
        try:
            management.load_command_class(app, name)
        except Exception as e:
            raise RuntimeError(f"management command {name!r} of {app}: {e}") from e
    apps = importlib.import_module("django.apps").apps
    for config in apps.get_app_configs():
        # find_spec first: an ImportError raised inside an existing tasks module must
        # fail the preload, not pass for "this app has no tasks".
        is_package = hasattr(config.module, "__path__")
        if is_package and importlib.util.find_spec(f"{config.name}.tasks") is not None:
            importlib.import_module(f"{config.name}.tasks")
    # Every management command runs the system checks before handle(); they import
    # the URLconf with its views, the middleware and the template tag libraries. One
    # pass here does those imports once; database checks are not run.
    if not importlib.import_module("django.core.checks").run_checks():
        _skip_clean_automatic_checks(management.BaseCommand)


def _skip_clean_automatic_checks(command_class: Any) -> None:
    """The checks found nothing, so a command's automatic check before handle() would
    find nothing in a child either and print nothing: skipping it saves a child most of
    its CPU and the latency to handle(), and nothing a run shows differs. The checks
    asked for run as ever: `manage.py check` (display_num_errors), `migrate` (its
    databases), any call with deployment checks or a fail level."""
    check = command_class.check

    def check_unless_automatic(self: Any, app_configs: Any = None, tags: Any = None,
                               display_num_errors: bool = False, **options: Any) -> Any:
        if app_configs is None and not display_num_errors and not options:
            return None
        return check(self, app_configs, tags, display_num_errors, **options)

    command_class.check = check_unless_automatic


def forget_connections() -> None:
    """Makes every database connection inherited from the server reconnect in this child.

    Must run after the child has closed its copies of the inherited descriptors and
    before it opens any. close() would send the database's goodbye (PostgreSQL's
    Terminate, MySQL's COM_QUIT) over the socket the server shares, ending the session
    the server holds; with the descriptor already closed, the goodbye fails on EBADF and
    reaches nobody, and close() still resets the connection so the next query opens a
    new one. No descriptor may have been opened in between: the library would write
    its goodbye to whatever now has that number. Celery's worker does the same (it
    closes each connection's descriptor, then calls close()).
    """
    conf = sys.modules.get("django.conf")
    db = sys.modules.get("django.db")
    if conf is None or db is None or not conf.settings.configured:
        return
    for connection in db.connections.all(initialized_only=True):
        try:
            connection.close()
        except db.Error:
            pass  # the library's failed goodbye; Django has dropped the connection anyway
