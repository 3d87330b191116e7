"""Manifests and records round-trip; locks report and take over stale holders."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mjvault import Vault
from mjvault.errors import IntegrityError, VaultLocked
from mjvault.lock import WriteLock, break_lock
from mjvault.records import decode_record, encode_record
from mjvault.snapshots import decode_manifest, encode_manifest

ids = st.binary(min_size=32, max_size=32).map(bytes.hex)


@given(
    st.datetimes(timezones=st.just(UTC)),
    ids,
    st.one_of(st.none(), ids),
    st.text(max_size=100),
    st.dictionaries(
        st.sampled_from(["jobs", "images", "added", "updated", "removed"]), st.integers(0, 2**40)
    ),
)
def test_manifest_round_trip(
    time: datetime, tree: str, parent: str | None, source: str, stats: dict[str, int]
) -> None:
    data = encode_manifest(
        time=time, tree=tree, parent=parent, source=source, host="h", tool="t", stats=stats
    )
    snapshot = decode_manifest("ab" * 32, data)
    assert (snapshot.time, snapshot.tree, snapshot.parent, snapshot.source, snapshot.stats) == (
        time,
        tree,
        parent,
        source,
        stats,
    )


@given(st.binary(max_size=2000))
def test_record_round_trip_is_byte_exact(raw: bytes) -> None:
    assert decode_record("00" * 32, encode_record(raw)) == raw


def test_a_non_manifest_is_refused() -> None:
    with pytest.raises(IntegrityError):
        decode_manifest("ab" * 32, encode_record(b"{}"))


def test_stale_lock_of_a_dead_process_is_reported_and_taken_over(vault: Vault) -> None:
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    pid = int(dead.stdout)
    import socket

    (vault.path / "lock").write_text(
        json.dumps({"pid": pid, "host": socket.gethostname(), "time": 0, "command": "mjvault sync"})
    )
    lock = WriteLock(vault.path)
    with lock:
        assert lock.stale_holder is not None and lock.stale_holder["pid"] == pid
    assert break_lock(vault.path) is None  # released cleanly: nothing left to break


def test_unlock_refuses_a_live_holder(vault: Vault) -> None:
    with WriteLock(vault.path), pytest.raises(VaultLocked, match="running process"):
        break_lock(vault.path)


def test_lock_held_by_another_process_names_it(vault: Vault, tmp_path: Path) -> None:
    ready = tmp_path / "ready"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from pathlib import Path; from mjvault.lock import WriteLock\n"
            "with WriteLock(Path(sys.argv[1]), 'mjvault import'):\n"
            "    Path(sys.argv[2]).touch(); time.sleep(30)",
            str(vault.path),
            str(ready),
        ]
    )
    try:
        for _ in range(200):
            if ready.exists():
                break
            import time

            time.sleep(0.05)
        with pytest.raises(VaultLocked) as caught:
            WriteLock(vault.path).acquire()
        assert f"pid {holder.pid}" in str(caught.value) and "mjvault unlock" in str(caught.value)
    finally:
        holder.kill()
        holder.wait()
    with WriteLock(vault.path) as lock:  # the kernel dropped the dead holder's flock
        assert lock.stale_holder is not None and lock.stale_holder["pid"] == holder.pid
    assert os.path.exists(vault.path / "lock")


def test_a_resumed_checkpoint_of_another_source_is_named_in_the_snapshot(vault: Vault) -> None:
    from tests.conftest import record_json

    first = vault.writer("import:/old")
    first.start()
    first.add_job(record_json("from-import"), [])
    first.abort()  # a killed import: checkpoint kept
    with vault.writer("midjourney:v3:u") as second:
        second.add_job(record_json("from-sync"), [])
    head = vault.head()
    assert head is not None and head.source == "import:/old; midjourney:v3:u"
    assert {e.job_id for e in vault.entries()} == {"from-import", "from-sync"}
