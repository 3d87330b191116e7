"""Bad input gets one clear line and a non-zero exit, never a traceback."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import run_cli


def one_line_error(result, code: int) -> str:  # type: ignore[no-untyped-def]
    assert result.returncode == code, (result.returncode, result.stderr)
    err = result.stderr.decode()
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    return lines[0]


def test_not_a_vault(tmp_path: Path) -> None:
    line = one_line_error(run_cli("log", cwd=tmp_path), 10)
    assert "no vault here" in line and "mjvault init" in line


def test_wrong_passphrase_and_missing_passphrase(tmp_path: Path) -> None:
    vault = tmp_path / "v"
    secret = tmp_path / "pass"
    secret.write_text("right passphrase\n")
    created = run_cli("--passphrase-file", str(secret), "init", "--encrypt", str(vault))
    assert created.returncode == 0, created.stderr
    assert run_cli("--vault", str(vault), "--passphrase-file", str(secret), "log").returncode == 0
    line = one_line_error(
        run_cli("--vault", str(vault), "log", env={"MJVAULT_PASSPHRASE": "wrong"}), 12
    )
    assert line == "mjvault: error: wrong passphrase: no key of this vault opens with it"
    line = one_line_error(run_cli("--vault", str(vault), "log"), 1)
    assert "MJVAULT_PASSPHRASE" in line


def test_bad_object_id_and_unknown_job(tmp_path: Path) -> None:
    vault = tmp_path / "v"
    assert run_cli("init", str(vault)).returncode == 0
    assert "64 hex" in one_line_error(run_cli("--vault", str(vault), "cat", "xyz"), 2)
    assert "no job" in one_line_error(run_cli("--vault", str(vault), "show", "nope"), 1)
    assert "already a vault" in one_line_error(run_cli("init", str(vault)), 1)


def test_verify_exit_code_and_json_on_damage(tmp_path: Path) -> None:
    vault = tmp_path / "v"
    archive = tmp_path / "a"
    from mjvault.testing.archive import write_sample_archive

    write_sample_archive(archive, jobs=5, seed=2)
    assert run_cli("init", str(vault)).returncode == 0
    assert run_cli("--vault", str(vault), "import", str(archive)).returncode == 0
    ok = run_cli("--vault", str(vault), "--json", "verify", "--read-data")
    assert ok.returncode == 0 and json.loads(ok.stdout)["ok"] is True
    victim = next(
        p for p in (vault / "objects").rglob("*") if p.is_file() and p.stat().st_size > 1000
    )
    victim.chmod(0o644)
    victim.write_bytes(victim.read_bytes()[:-1] + b"\x00")
    bad = run_cli("--vault", str(vault), "--json", "verify", "--read-data")
    assert bad.returncode == 3
    problems = json.loads(bad.stdout)["problems"]
    assert [p["object"] for p in problems] == [victim.name]
    assert problems[0]["jobs"]


def test_interrupt_leaves_vault_usable(tmp_path: Path) -> None:
    import signal
    import subprocess
    import sys
    import time

    from mjvault.testing.archive import write_sample_archive

    archive = tmp_path / "a"
    write_sample_archive(archive, jobs=40, seed=4, large=True)
    vault = tmp_path / "v"
    assert run_cli("init", str(vault)).returncode == 0
    child = subprocess.Popen(
        [sys.executable, "-m", "mjvault", "--vault", str(vault), "import", str(archive)],
        stderr=subprocess.PIPE,
    )
    # Interrupt as soon as the import is writing objects: mid-way, not before or after.
    deadline = time.monotonic() + 30
    while len(list((vault / "tmp").iterdir())) < 4 and time.monotonic() < deadline:
        time.sleep(0.002)
    child.send_signal(signal.SIGINT)
    _, err = child.communicate(timeout=60)
    assert child.returncode == 130, err
    assert b"Traceback" not in err and b"rerun" in err
    assert run_cli("--vault", str(vault), "verify", "--read-data").returncode == 0
    resumed = run_cli("--vault", str(vault), "--json", "import", str(archive))
    assert resumed.returncode == 0
    assert json.loads(resumed.stdout)["resumed_from_checkpoint"] is True
    log = json.loads(run_cli("--vault", str(vault), "--json", "log").stdout)
    assert [s["stats"]["jobs"] for s in log] == [40]
