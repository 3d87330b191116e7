"""Shared helpers for the configuration and command-line tests: an isolated config world."""

from __future__ import annotations

import io
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from mjvault.config import loader
from tests.conftest import Result, invoke_cli

__all__ = ["Result", "World", "isolate", "run_cli"]

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


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> Result:
    """Run the real entry point in this process, in the world's environment as it stands
    (MJVAULT_* included), with the keyring backend the test installed, and ``sys.stdin``'s
    unread text (a test sets it to a StringIO) as stdin."""
    capsys.readouterr()  # what the test printed before is not the command's
    stdin = sys.stdin.read().encode() if isinstance(sys.stdin, io.StringIO) else None
    return Result.of(invoke_cli(list(args), input=stdin))
