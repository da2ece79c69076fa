"""What a child runs, as `python ARGV...` would run it:

- `[.../manage.py, NAME, ARG...]`: Django's execute_from_command_line, which is what
  a project's manage.py calls (its own code is not run: the preload did its part);
- `[-m, MODULE, ARG...]`: the module as `python -m` runs it;
- `[PATH, ARG...]`: the script (or a directory or zip file with a __main__.py).

Each returns normally or raises what the run raised; finish.py turns that into a status.
"""

from __future__ import annotations

import builtins
import importlib
import importlib.machinery
import io
import os
import sys
import types
from typing import Any

# The function `python -m` itself calls, looked up by name by the interpreter's C code,
# so it stays; it gives a run the exact argv[0], __main__ and error messages of a cold -m.
_run_module_as_main: Any = getattr(importlib.import_module("runpy"), "_run_module_as_main")


def run(argv: list[str], path_entry: str | None) -> None:
    """`path_entry`: the sys.path entry that `python -m jobd.warm` put first for the
    server (None under -P); the run gets the one its cold interpreter would put there."""
    if argv[0] == "-m":
        _module(argv[1:], path_entry)
    elif os.path.basename(argv[0]) == "manage.py":
        _manage(argv, path_entry)
    else:
        _path(argv, path_entry)


def _manage(argv: list[str], path_entry: str | None) -> None:
    sys.argv = list(argv)
    _fresh_main(argv[0])
    _replace_path_entry(path_entry, os.path.dirname(os.path.realpath(argv[0])))
    management = importlib.import_module("django.core.management")
    management.execute_from_command_line(list(argv))


def _module(args: list[str], path_entry: str | None) -> None:
    if not args:
        print("Argument expected for the -m option", file=sys.stderr)
        raise SystemExit(2)
    sys.argv = ["-m", *args[1:]]
    _fresh_main(None)
    _replace_path_entry(path_entry, os.getcwd())
    _run_module_as_main(args[0], True)


def _path(argv: list[str], path_entry: str | None) -> None:
    path = argv[0]
    sys.argv = list(argv)
    main = _fresh_main(path)
    if _is_package_location(path):
        _replace_path_entry(path_entry, path)
        _run_module_as_main("__main__", False)
        return
    try:
        with io.open_code(path) as f:
            source = f.read()
    except OSError as e:
        print(
            f"{sys.executable}: can't open file {os.path.abspath(path)!r}: "
            f"[Errno {e.errno}] {e.strerror}",
            file=sys.stderr,
        )
        raise SystemExit(2) from None
    _replace_path_entry(path_entry, os.path.dirname(os.path.realpath(path)))
    # Since Python 3.9 the script's __file__ and traceback lines are absolute paths,
    # while sys.argv[0] stays as given.
    filename = os.path.abspath(path)
    main.__loader__ = importlib.machinery.SourceFileLoader("__main__", filename)
    code = compile(source, filename, "exec", dont_inherit=True)
    exec(code, main.__dict__)


def _fresh_main(path: str | None) -> types.ModuleType:
    """A new, empty __main__ for the run, as a cold interpreter has: the server's own
    (jobd.warm's) is not the run's business."""
    main = types.ModuleType("__main__")
    main.__dict__["__builtins__"] = builtins
    if path is not None:
        main.__file__ = os.path.abspath(path)
        main.__dict__["__cached__"] = None
    sys.modules["__main__"] = main
    return main


def _replace_path_entry(server_entry: str | None, run_entry: str) -> None:
    if server_entry is None or server_entry not in sys.path:
        return
    sys.path[sys.path.index(server_entry)] = run_entry


def _is_package_location(path: str) -> bool:
    """A directory or zip file, which Python runs by its __main__ module: the test the
    interpreter makes, whether an import hook accepts the path."""
    for hook in sys.path_hooks:
        try:
            hook(path)
        except ImportError:
            continue
        return True
    return False
