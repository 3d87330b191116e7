"""Start-up (issue 12): each command imports only what it needs.

A command runs in a fresh interpreter, as a user runs it, and reports every module it
imported: `--version` and `--help` load no command module and none of the heavy libraries,
and no command on a plain vault loads `cryptography`, which only encrypted vaults need.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import click
import pytest

from mjvault import Vault
from mjvault.cli.root import COMMANDS, cli
from tests.conftest import CHEAP_KDF, PASSPHRASE, record_json

# Run the real entry point, then write the name of every imported module to MODULES_OUT.
PROBE = """
import os, sys
from mjvault.cli.main import main
try:
    main(sys.argv[1:])
finally:
    with open(os.environ["MODULES_OUT"], "w") as out:
        out.write("\\n".join(sys.modules))
"""

HEAVY = ("tqdm", "httpx", "PIL", "zstandard", "msgpack", "lmdb", "blake3", "cryptography")
JOB_ID = "0a1b2c3d-0000-4000-8000-000000000001"


def imports_of(
    tmp_path: Path, *args: str, env: dict[str, str] | None = None
) -> tuple[subprocess.CompletedProcess[str], set[str]]:
    """Run `mjvault ARGS` in a fresh interpreter; its result and the modules it imported."""
    out = tmp_path / "modules.txt"
    # Without coverage's measurement (COVERAGE_PROCESS_CONFIG, under `--cov`): what coverage
    # imports itself (socket, tomllib…) is no command's doing.
    full_env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("MJVAULT_", "_MJVAULT", "COVERAGE_"))
    }
    # No user or system configuration file from the machine running the tests.
    full_env |= {
        "MJVAULT_CONFIG": str(tmp_path / "user.toml"),
        "MJVAULT_SYSTEM_CONFIG": str(tmp_path / "system.toml"),
        "MODULES_OUT": str(out),
    } | (env or {})
    result = subprocess.run(
        [sys.executable, "-c", PROBE, *args],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=120,
    )
    return result, set(out.read_text().split("\n"))


def top_level(modules: set[str]) -> set[str]:
    return {name.split(".")[0] for name in modules}


def command_modules(modules: set[str]) -> set[str]:
    return {f"mjvault.cli.{entry.module}" for entry in COMMANDS.values()} & modules


def make_vault(path: Path, *, encrypt: bool) -> Path:
    vault = (
        Vault.init(path, encrypt=True, passphrase=PASSPHRASE, kdf=CHEAP_KDF)
        if encrypt
        else Vault.init(path)
    )
    with vault.writer("test") as writer:
        writer.add_job(record_json(JOB_ID, "a red fox in the snow"), [])
    vault.close()
    return path


def test_version_imports_neither_click_nor_any_command(tmp_path: Path) -> None:
    result, modules = imports_of(tmp_path, "--version")
    assert (result.returncode, result.stdout) == (0, "mjvault, version 0.1.0\n")
    assert "click" not in top_level(modules)
    assert not {m for m in modules if m.startswith("mjvault.")} - {
        "mjvault.cli",
        "mjvault.cli.main",
    }


def test_version_says_what_click_says(tmp_path: Path) -> None:
    # Any other root option sends --version through click's version_option: same answer.
    direct, _ = imports_of(tmp_path, "--version")
    through_click, modules = imports_of(tmp_path, "--no-color", "--version")
    assert "click" in top_level(modules)
    assert (through_click.returncode, through_click.stdout) == (0, direct.stdout)


def test_help_lists_every_command_from_the_table_alone(tmp_path: Path) -> None:
    result, modules = imports_of(tmp_path, "--help")
    assert result.returncode == 0
    for name in COMMANDS:
        assert f"\n  {name} " in result.stdout
    assert not command_modules(modules)
    assert not top_level(modules) & set(HEAVY)
    assert "mjvault.config" not in modules


@pytest.mark.parametrize("width", [50, 80, 200])
def test_help_summaries_are_the_commands_own(width: int) -> None:
    """The table's summaries, shortened as click shortens help, are what click would list
    after importing every command: the lazy listing changes nothing a user sees."""
    group = type(cli)(name="mjvault", commands={})  # a fresh LazyGroup: loads on request
    ctx = click.Context(group, info_name="mjvault")
    lazy = click.HelpFormatter(width=width)
    group.format_commands(ctx, lazy)
    for name in COMMANDS:  # import them all, then let click list them its own way
        assert group.get_command(ctx, name) is not None
    eager = click.HelpFormatter(width=width)
    click.Group.format_commands(group, ctx, eager)
    assert lazy.getvalue() == eager.getvalue()
    for name, entry in COMMANDS.items():
        command = group.get_command(ctx, name)
        assert command is not None and command.get_short_help_str(10**6) == entry.summary


@pytest.mark.parametrize("word", ["l", ""])
def test_completing_command_names_imports_no_command(tmp_path: Path, word: str) -> None:
    env = {
        "_MJVAULT_COMPLETE": "zsh_complete",
        "COMP_WORDS": f"mjvault {word}",
        "COMP_CWORD": "1",
    }
    result, modules = imports_of(tmp_path, env=env)
    assert result.returncode == 0
    # zsh's format: type, value, help, three lines per item
    lines = result.stdout.splitlines()
    items = {lines[i + 1]: lines[i + 2] for i in range(0, len(lines), 3) if lines[i] == "plain"}
    ctx = click.Context(cli)
    offered = {}  # what click offers when it imports every command
    for name in COMMANDS:
        command = cli.get_command(ctx, name)
        if name.startswith(word) and command is not None:
            offered[name] = command.get_short_help_str()
    assert items == offered and ("log" in items) and (len(items) == 1) == (word == "l")
    assert not command_modules(modules)


@pytest.mark.parametrize(
    "args",
    [["log"], ["search", "fox", "snow"], ["show", JOB_ID[:8]], ["stats"], ["--version"]],
    ids=lambda args: args[0],
)
def test_a_plain_vault_never_imports_cryptography(tmp_path: Path, args: list[str]) -> None:
    vault = make_vault(tmp_path / "vault", encrypt=False)
    result, modules = imports_of(tmp_path, "--vault", str(vault), *args)
    assert result.returncode == 0, result.stderr
    assert JOB_ID[:8] in result.stdout or args[0] in ("log", "stats", "--version")
    assert "cryptography" not in top_level(modules)
    # What only writers (the lock, staging threads, temp names), errors (did-you-mean), a
    # config file or a terminal's progress bar need.
    assert not top_level(modules) & {
        "socket",
        "concurrent",
        "secrets",
        "difflib",
        "tomllib",
        "tqdm",
    }


def test_an_encrypted_vault_loads_cryptography_and_opens(tmp_path: Path) -> None:
    vault = make_vault(tmp_path / "vault", encrypt=True)
    env = {"MJVAULT_PASSPHRASE": PASSPHRASE}
    result, modules = imports_of(tmp_path, "--vault", str(vault), "search", "fox", env=env)
    assert result.returncode == 0, result.stderr
    assert JOB_ID[:8] in result.stdout
    assert "cryptography" in top_level(modules)
    wrong, _ = imports_of(tmp_path, "--vault", str(vault), "log", env={"MJVAULT_PASSPHRASE": "no"})
    assert wrong.returncode != 0 and "wrong passphrase" in wrong.stderr


def test_a_bar_nobody_watches_does_what_a_disabled_tqdm_bar_does() -> None:
    """Off a terminal a command gets a SilentBar, not tqdm; it takes every call commands
    make on a bar, and keeps count and total as a disabled tqdm bar does."""
    from tqdm import tqdm

    from mjvault.cli.context import AppContext, SilentBar

    with AppContext(progress_enabled=False).progress(10, "jobs") as silent:
        assert isinstance(silent, SilentBar)
        for bar in (silent, tqdm(total=10, disable=True)):
            bar.unit_scale = True
            bar.update(5)
            bar.update()
            assert (bar.n, bar.total) == (0, 10)
            bar.reset(total=20)
            bar.update(3)
            bar.total = 30
            bar.refresh()
            assert (bar.n, bar.total) == (0, 30)
            bar.close()


@pytest.mark.parametrize("xdg", [None, "", "   ", "/tmp/somewhere else"])
def test_the_user_config_path_is_platformdirs_own(
    xdg: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Linux's rule is written out to spare start-up the import; it must stay platformdirs'."""
    import platformdirs

    from mjvault.config.loader import user_config_path

    if xdg is None:
        monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    else:
        monkeypatch.setenv("XDG_CONFIG_HOME", xdg)
    expected = Path(platformdirs.user_config_dir("mjvault", appauthor=False)) / "config.toml"
    assert user_config_path({}) == expected
