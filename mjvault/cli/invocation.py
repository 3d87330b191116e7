"""How to write an mjvault command line the person can paste into the shell they ran us from."""

from __future__ import annotations

import os
import shlex
import shutil
import sys
from pathlib import Path


def program() -> str:
    """``mjvault`` when that name finds this program on PATH; else the path it was run by
    (``.venv/bin/mjvault``, as typed, so it works from the same directory), or
    ``python -m mjvault`` with the interpreter that ran it."""
    argv0 = sys.argv[0] if sys.argv else ""
    if not argv0 or Path(argv0).name == "__main__.py" or argv0 == "-m":
        return f"{shlex.quote(sys.executable)} -m mjvault"
    if not Path(argv0).name.lower().startswith("mjvault"):
        return "mjvault"  # called from another program (a test runner, a script): the name
    found = shutil.which(Path(argv0).name)
    if found and _same_file(found, argv0):
        return Path(argv0).name
    return shlex.quote(argv0)


def activate_hint() -> str | None:
    """When mjvault runs from a virtual environment that is not on PATH: how to put it there."""
    argv0 = sys.argv[0] if sys.argv else ""
    if program() in ("mjvault", Path(argv0).name) or Path(argv0).name == "__main__.py":
        return None
    activate = Path(argv0).parent / "activate"
    return f"source {shlex.quote(str(activate))}" if activate.is_file() else None


def _same_file(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False
