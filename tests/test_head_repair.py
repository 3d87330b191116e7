"""A damaged refs/HEAD: commands point at `verify --repair` in one line, and repair restores
HEAD from the newest snapshot that refs/snapshots/ lists, saying so."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from mjvault import Vault
from mjvault.errors import EXIT_INTEGRITY
from mjvault.integrity.repair import repair
from mjvault.testing.accounts import Account
from mjvault.testing.server import FakeMidjourney
from tests.conftest import png_bytes, record_json, run_cli


def add_snapshot(vault: Vault, first: int) -> str:
    with vault.writer("test") as writer:
        for n in range(first, first + 2):
            writer.add_job(record_json(f"job-{n}"), [writer.put_media(png_bytes(n))])
    head = vault.refs.head()
    assert head is not None
    return head


def _write(data: bytes) -> Callable[[Path], None]:
    return lambda head: head.write_bytes(data)


DAMAGE: dict[str, Callable[[Path], None]] = {
    "garbage": _write(b"garbage\n"),
    "binary": _write(b"\x00\xff\x80\x81" * 8),
    "empty": _write(b""),
    "an id with no object": _write(b"ab" * 32 + b"\n"),
    "huge": _write(b"f" * (4 << 20)),
    "a truncated id": _write(b"ab" * 20),
}


def one_line(result: subprocess.CompletedProcess[bytes], code: int) -> str:
    err = result.stderr.decode()
    assert result.returncode == code, (result.returncode, err)
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    return lines[0]


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_commands_point_at_repair_and_repair_restores_head(tmp_path: Path, damage: str) -> None:
    with Vault.init(tmp_path / "v") as vault:
        older = add_snapshot(vault, 0)
        newest = add_snapshot(vault, 2)
        assert older != newest
    path = tmp_path / "v"
    DAMAGE[damage](path / "refs" / "HEAD")

    for args in (("log",), ("show", "job-1"), ("search", "fox")):
        line = one_line(run_cli("--vault", str(path), *args), EXIT_INTEGRITY)
        assert "refs/HEAD" in line and "mjvault verify --repair" in line, line

    result = run_cli("--vault", str(path), "verify", "--repair")
    assert result.returncode == 0, result.stdout.decode() + result.stderr.decode()
    said = result.stdout.decode() + result.stderr.decode()
    assert f"restored refs/HEAD to snapshot {newest[:12]}" in said, said
    assert (path / "refs" / "HEAD").read_text() == newest + "\n"
    assert run_cli("--vault", str(path), "verify", "--read-data").returncode == 0
    shown = run_cli("--vault", str(path), "log")
    assert shown.returncode == 0 and f"{newest[:12]} (HEAD)" in shown.stdout.decode()


def test_sync_points_at_repair(tmp_path: Path) -> None:
    with Vault.init(tmp_path / "v") as vault:
        add_snapshot(vault, 0)
    (tmp_path / "v" / "refs" / "HEAD").write_text("not an id\n")
    with FakeMidjourney(Account.generate(5, 3), token="sess-head-repair-0123") as server:
        env = {
            "MJVAULT_WEB_BASE": server.web_base,
            "MJVAULT_CDN_BASE": server.cdn_base,
            "MIDJOURNEY_SESSION_TOKEN": server.token,
            "MIDJOURNEY_USER_ID": server.user_id,
            "HOME": os.environ.get("HOME", "/tmp"),
        }
        result = run_cli("--vault", str(tmp_path / "v"), "sync", env=env)
    line = one_line(result, EXIT_INTEGRITY)
    assert "refs/HEAD" in line and "mjvault verify --repair" in line, line


def test_repair_picks_the_newest_readable_snapshot(vault: Vault) -> None:
    older = add_snapshot(vault, 0)
    newest = add_snapshot(vault, 2)
    (vault.path / "refs" / "HEAD").write_text("x")
    # The newest marker's manifest is gone too: HEAD goes back to the newest that reads.
    manifest = vault.object_path(newest)
    os.chmod(manifest, 0o644)
    manifest.unlink()
    report = repair(vault)
    assert vault.refs.head() == older
    assert any(f"restored refs/HEAD to snapshot {older[:12]}" in n for n in report.notes)
    assert [e.job_id for e in vault.entries()] == ["job-0", "job-1"]


def test_repair_restores_a_missing_head(vault: Vault) -> None:
    add_snapshot(vault, 0)
    newest = add_snapshot(vault, 2)
    (vault.path / "refs" / "HEAD").unlink()
    report = repair(vault)
    assert vault.refs.head() == newest
    assert any(f"restored refs/HEAD to snapshot {newest[:12]}" in n for n in report.notes)


def test_repair_leaves_a_good_head_alone(vault: Vault) -> None:
    add_snapshot(vault, 0)
    head = add_snapshot(vault, 2)
    report = repair(vault)
    assert report.ok and vault.refs.head() == head
    assert not any("refs/HEAD" in n for n in report.notes)


def test_a_missing_head_of_an_empty_vault_is_no_damage(vault: Vault) -> None:
    assert vault.refs.head() is None
    assert run_cli("--vault", str(vault.path), "log").returncode == 0
