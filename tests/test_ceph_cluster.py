"""The test suite's Ceph cluster (mjvault/testing/ceph.py): a start that fails says why in
one line within its deadline and leaves no daemon behind. Its S3 behaviour is tested where
the remotes are (test_remotes.py, test_remote_packs.py), on the session's cluster."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest

from mjvault.testing import ceph
from tests.conftest import service_missing

pytestmark = pytest.mark.engines


def processes_mentioning(text: str) -> list[int]:
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if text.encode() in (proc / "cmdline").read_bytes():
                    found.append(int(proc.name))
            except OSError:
                pass
    return found


def test_a_cluster_that_cannot_start_says_which_daemon_and_leaves_none(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reason = ceph.ceph_unavailable()
    if reason:
        service_missing(reason)
    with socket.socket() as held:  # the monitor's port, taken: it cannot bind and exits
        held.bind(("127.0.0.1", 0))
        held.listen()
        monkeypatch.setattr(ceph, "free_port", lambda: held.getsockname()[1])
        started = time.monotonic()
        with pytest.raises(ceph.CephError) as failed:
            ceph.CephCluster(tmp_path / "cluster", timeout=40)
    assert time.monotonic() - started < 45
    message = str(failed.value)
    assert message.startswith("mon.a exited with") and "unable to bind" in message, message
    assert "\n" not in message
    assert processes_mentioning(str(tmp_path / "cluster")) == []


def test_a_cluster_starts_only_in_a_fresh_folder(tmp_path: Path) -> None:
    reason = ceph.ceph_unavailable()
    if reason:
        service_missing(reason)
    (tmp_path / "left-over").write_text("x")
    with pytest.raises(ceph.CephError, match="is not empty"):
        ceph.CephCluster(tmp_path)


def test_without_the_daemons_the_reason_names_them_and_the_installer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    reason = ceph.ceph_unavailable()
    assert reason is not None and "radosgw" in reason and "install-ceph" in reason
    with pytest.raises(ceph.CephError, match="not installed"):
        ceph.CephCluster(Path("/nonexistent/cluster"))
