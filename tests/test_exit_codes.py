"""Exit codes through the real command line, in process: the three reasons a vault cannot
be opened each have their own code (docs/usage.md, "Exit codes"), and a command that ends
with a partial or failed result gives its code without a second message."""

from __future__ import annotations

from pathlib import Path

import pytest

from mjvault.errors import (
    EXIT_ERROR,
    EXIT_LOCKED,
    EXIT_NO_VAULT,
    EXIT_WRONG_PASSPHRASE,
    VaultLocked,
    VaultNotFound,
    WrongPassphrase,
)
from mjvault.lock import WriteLock
from mjvault.vault import Vault
from tests.config_helpers import Result, World, isolate, run_cli
from tests.conftest import CHEAP_KDF, PASSPHRASE


@pytest.fixture
def world(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> World:
    return isolate(monkeypatch, tmp_path)


def one_error(result: Result) -> str:
    (line,) = result.err.strip().splitlines()
    assert line.startswith("mjvault: error: ") and "Traceback" not in result.err
    return line


def test_the_codes_are_restics() -> None:
    # Scripts written for restic's 10/11/12 read mjvault's the same way.
    assert (EXIT_NO_VAULT, EXIT_LOCKED, EXIT_WRONG_PASSPHRASE) == (10, 11, 12)
    assert VaultNotFound("x").exit_code == EXIT_NO_VAULT
    assert VaultLocked("x").exit_code == EXIT_LOCKED
    assert WrongPassphrase("x").exit_code == EXIT_WRONG_PASSPHRASE


def test_no_vault_exits_10(capsys: pytest.CaptureFixture[str], world: World) -> None:
    missing = world.root / "none"
    result = run_cli(capsys, "--vault", str(missing), "log")
    assert result.code == 10 and "is not a vault" in one_error(result)
    # Found by discovery: nothing here or above (the world's root holds no vault).
    discovered = run_cli(capsys, "log")
    assert discovered.code == 10 and "no vault here" in one_error(discovered)
    as_json = run_cli(capsys, "--json", "--vault", str(missing), "log")
    assert as_json.code == 10
    assert as_json.json()["error"]["type"] == "VaultNotFound"
    assert as_json.json()["error"]["exit_code"] == 10


def test_locked_vault_exits_11(capsys: pytest.CaptureFixture[str], world: World) -> None:
    Vault.init(world.root / "v").close()
    holder = WriteLock(world.root / "v", "sync").acquire()
    try:
        result = run_cli(capsys, "--vault", str(world.root / "v"), "gc", "--grace", "0")
        as_json = run_cli(capsys, "--json", "--vault", str(world.root / "v"), "gc")
    finally:
        holder.release()
    assert result.code == 11 and "locked" in one_error(result)
    assert as_json.code == 11 and as_json.json()["error"]["exit_code"] == 11
    # Once the holder is gone the same command runs.
    assert run_cli(capsys, "--vault", str(world.root / "v"), "gc", "--grace", "0").code == 0


def test_wrong_passphrase_exits_12(
    capsys: pytest.CaptureFixture[str], world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    Vault.init(world.root / "v", encrypt=True, passphrase=PASSPHRASE, kdf=CHEAP_KDF).close()
    monkeypatch.setenv("MJVAULT_PASSPHRASE", "not the passphrase")
    result = run_cli(capsys, "--vault", str(world.root / "v"), "log")
    assert result.code == 12 and "wrong passphrase" in one_error(result)
    monkeypatch.setenv("MJVAULT_PASSPHRASE", PASSPHRASE)
    assert run_cli(capsys, "--vault", str(world.root / "v"), "log").code == 0


def test_a_missing_passphrase_is_not_a_wrong_one(
    capsys: pytest.CaptureFixture[str], world: World
) -> None:
    # Nothing to try (no variable, no file, no terminal): an error to fix, not a wrong guess.
    Vault.init(world.root / "v", encrypt=True, passphrase=PASSPHRASE, kdf=CHEAP_KDF).close()
    result = run_cli(capsys, "--vault", str(world.root / "v"), "log")
    assert result.code == EXIT_ERROR
    one_error(result)


def test_a_command_ending_with_a_code_prints_nothing_more(
    capsys: pytest.CaptureFixture[str], world: World
) -> None:
    # `config get` of an unset key: exit 1 and no output at all, no error line either.
    result = run_cli(capsys, "config", "get", "sync.limit_rate")
    assert (result.code, result.out, result.err) == (1, "", "")


def test_root_help_lists_the_codes(capsys: pytest.CaptureFixture[str], world: World) -> None:
    shown = run_cli(capsys, "--help")
    assert shown.code == 0
    text = " ".join(shown.out.split())
    assert "10 no vault, 11 vault locked, 12 wrong passphrase" in text


def test_every_code_is_documented_where_users_look() -> None:
    from mjvault import errors
    from mjvault.cli.root import EPILOG

    codes = {v for k, v in vars(errors).items() if k.startswith("EXIT_") and isinstance(v, int)}
    usage = (Path(__file__).parents[1] / "docs" / "usage.md").read_text(encoding="utf-8")
    section = usage.split("## Exit codes", 1)[1].split("\n## ", 1)[0]
    cells = [line.split("|")[1].strip() for line in section.splitlines() if line.startswith("|")]
    table = {int(cell) for cell in cells if cell.isdigit()}
    assert table == codes
    assert all(f"{code} " in " ".join(EPILOG.split()) for code in codes)
