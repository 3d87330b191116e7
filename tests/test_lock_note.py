"""Whatever a lock note holds, writers, `unlock` and the lock message cope with one line."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from mjvault import Vault
from mjvault.errors import VaultLocked
from mjvault.lock import WriteLock, break_lock, describe_holder, read_holder
from tests.conftest import png_bytes, record_json, run_cli

# A dead writer, a hand edit or a damaged disk can leave any of these in <vault>/lock.
NOTES: dict[str, bytes] = {
    "a JSON list": b"[1,2]",
    "a JSON string": b'"mjvault sync"',
    "a JSON number": b"42",
    "JSON null": b"null",
    "garbage bytes": b"\xff\xfe\x00lock\x80",
    "empty": b"",
    "whitespace": b" \n\t ",
    "truncated JSON": b'{"pid": 12',
    "deeply nested JSON": b"[" * 100_000 + b"]" * 100_000,
    "huge": b'{"pid": 1, "command": "' + b"x" * 1_000_000 + b'"}',
    "fields of the wrong types": (
        b'{"pid": [1], "host": {"a": 1}, "time": "yesterday", "command": 7}'
    ),
    "a time out of range": b'{"pid": 1, "host": "h", "time": 1e300, "command": "c"}',
    "an infinite time": b'{"pid": 1, "host": "h", "time": Infinity, "command": "c"}',
    "a huge integer pid": b'{"pid": ' + b"9" * 5000 + b', "host": "h"}',
    "control characters": b'{"pid": 1, "host": "h\\n\\u001b[31m", "command": "a\\rb"}',
}


@pytest.mark.parametrize("name", sorted(NOTES))
def test_any_note_is_read_as_a_holder_or_nothing(tmp_path: Path, name: str) -> None:
    path = tmp_path / "lock"
    path.write_bytes(NOTES[name])
    holder = read_holder(path)
    assert holder is None or isinstance(holder, dict)
    line = describe_holder(holder)
    assert "\n" not in line and "\r" not in line and "\x1b" not in line
    assert len(line) < 400


@pytest.mark.parametrize("name", sorted(NOTES))
def test_writers_and_unlock_take_over_any_note(vault: Vault, name: str) -> None:
    lock_file = vault.path / "lock"
    lock_file.write_bytes(NOTES[name])
    with vault.writer("test") as writer:
        writer.add_job(record_json("job-1"), [writer.put_media(png_bytes(1))])
    assert [e.job_id for e in vault.entries()] == ["job-1"]
    assert lock_file.read_bytes() == b""  # released: the note is cleared

    lock_file.write_bytes(NOTES[name])
    result = run_cli("--vault", str(vault.path), "unlock")
    assert result.returncode == 0, result.stderr
    assert b"Traceback" not in result.stderr
    assert lock_file.read_bytes() == b""  # an unreadable note is cleared too
    assert run_cli("--vault", str(vault.path), "unlock").stdout.strip() == (
        b"the vault was not locked"
    )


def test_a_live_holder_with_an_odd_note_is_still_refused(vault: Vault, tmp_path: Path) -> None:
    ready = tmp_path / "ready"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import fcntl, os, sys, time\n"
            "fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)\n"
            "fcntl.flock(fd, fcntl.LOCK_EX)\n"
            "os.write(fd, b'[1,2]')\n"
            "open(sys.argv[2], 'w').close()\n"
            "time.sleep(30)",
            str(vault.path / "lock"),
            str(ready),
        ]
    )
    try:
        deadline = time.monotonic() + 10
        while not ready.exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        with pytest.raises(VaultLocked, match="another process"):
            WriteLock(vault.path).acquire()
        with pytest.raises(VaultLocked, match="running process"):
            break_lock(vault.path)
        for args in (("unlock",), ("gc",)):
            result = run_cli("--vault", str(vault.path), *args)
            err = result.stderr.decode()
            assert result.returncode == 11 and "Traceback" not in err, err
            assert len(err.strip().splitlines()) == 1, err
    finally:
        holder.kill()
        holder.wait()
