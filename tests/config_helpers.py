"""Shared helpers for the configuration and command-line tests: an isolated config world."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from mjvault.cli.main import main
from mjvault.config import loader

SETTING_ENV_PREFIXES = ("MJVAULT_", "MIDJOURNEY_")


@dataclass
class World:
    root: Path
    user_file: Path
    system_file: Path

    def env(self) -> dict[str, str]:
        """The process environment of this world, for subprocesses."""
        return dict(os.environ)


def isolate(monkeypatch: pytest.MonkeyPatch, root: Path) -> World:
    for name in list(os.environ):
        if name.startswith(SETTING_ENV_PREFIXES) or name in ("NO_COLOR", "EDITOR", "VISUAL"):
            monkeypatch.delenv(name)
    world = World(root, root / "home" / "config.toml", root / "etc" / "config.toml")
    monkeypatch.setenv("MJVAULT_CONFIG", str(world.user_file))
    monkeypatch.setenv("MJVAULT_SYSTEM_CONFIG", str(world.system_file))
    monkeypatch.setenv("HOME", str(root / "home"))
    # No desktop keyring in tests unless a test installs one on purpose.
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", "keyring.backends.fail.Keyring")
    monkeypatch.chdir(root)
    monkeypatch.setattr(loader, "_warned", set())  # each test sees its own warnings
    return world


@dataclass
class Result:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> Result:
    """Run the real entry point in-process, exit code included."""
    try:
        main(list(args))
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    else:  # main() always exits
        code = -1
    captured = capsys.readouterr()
    return Result(code, captured.out, captured.err)
