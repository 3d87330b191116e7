"""A writer's own packs merged at the end of its run (mjvault/runpacks.py, FORMAT.md §8):
exactly the objects its snapshot needs stay, earlier runs' packs are untouched, and a kill at
any moment of the merge leaves a vault that verifies with every needed object present."""

from __future__ import annotations

import itertools
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mjvault import Vault
from mjvault.integrity.gc import gc
from mjvault.integrity.verify import verify
from mjvault.store.packfile import PackFileWriter, read_trailer_of
from tests.conftest import png_bytes, record_json

ROOT = Path(__file__).resolve().parents[1]


def add_jobs(vault: Vault, numbers: range, *, every: int = 25, prompt: str = "a fox") -> None:
    with vault.writer("test", checkpoint_jobs=every) as writer:
        for n in numbers:
            image = writer.put_media(png_bytes(n, 300))
            writer.add_job(record_json(f"job-{n:05d}", f"{prompt} number {n}"), [image])


def packed(vault: Vault) -> list[bytes]:
    """Every pack entry's id, read from the trailers alone (a repeat is an object stored twice)."""
    found: list[bytes] = []
    for name in vault.store.packs.names():
        found += [e.object_id for e in read_trailer_of(str(vault.store.packs.path(name))).entries]
    return found


def needed(vault: Vault) -> set[bytes]:
    """Records and tree nodes of every snapshot, the obvious way."""
    ids: set[str] = set()
    for snapshot in vault.snapshots():
        ids |= set(vault.tree.node_ids(snapshot.tree))
        ids |= {entry.record for entry in vault.entries(snapshot)}
    return {bytes.fromhex(i) for i in ids}


@pytest.mark.parametrize("encrypted", [False, True])
def test_a_run_leaves_exactly_the_nodes_its_tree_reaches(
    request: pytest.FixtureRequest, encrypted: bool
) -> None:
    vault: Vault = request.getfixturevalue("encrypted_vault" if encrypted else "vault")
    # 24 checkpoints, each rewriting the paths of its jobs: hundreds of superseded nodes.
    with vault.writer("test", checkpoint_jobs=25) as writer:
        for n in range(600):
            writer.add_job(record_json(f"job-{n:05d}", f"a fox number {n}"), [None])
    report = writer.merge_report
    assert report is not None and report.packs_before >= 48 and report.packs_after == 1
    assert report.nodes_dropped > 200 and report.records_kept == 600
    entries = packed(vault)
    assert len(entries) == len(set(entries))  # each object once
    assert set(entries) == needed(vault)  # records and the live nodes, nothing else
    assert verify(vault, read_data=True).ok
    assert sum(1 for _ in vault.entries()) == 600
    assert gc(vault, grace_seconds=0).removed == 0


def test_a_later_run_merges_only_its_own_packs(vault: Vault) -> None:
    add_jobs(vault, range(300))
    first = set(vault.store.packs.names())
    add_jobs(vault, range(300, 450))
    add_jobs(vault, range(290, 310), prompt="an owl")  # updates: two records superseded
    names = set(vault.store.packs.names())
    assert first <= names and len(names) == 3
    entries = packed(vault)
    assert len(entries) == len(set(entries))
    # What a later snapshot superseded stays for gc (its grace period protects readers of
    # older snapshots), but no run kept nodes that no snapshot ever named.
    assert set(entries) == needed(vault)
    assert verify(vault, read_data=True).ok
    assert vault.job(vault.entry("job-00300")).prompt == "an owl number 300"


def test_a_run_that_changes_nothing_or_writes_one_pack_leaves_its_packs(vault: Vault) -> None:
    add_jobs(vault, range(100))
    before = set(vault.store.packs.names())
    add_jobs(vault, range(100))  # nothing new
    assert set(vault.store.packs.names()) == before
    with vault.writer("test") as writer:
        writer.remove_job("job-00003")
    assert writer.merge_report is not None and writer.merge_report.packs_before == 1
    assert len(set(vault.store.packs.names()) - before) == 1
    assert verify(vault, read_data=True).ok


def test_a_resumed_run_leaves_the_killed_runs_packs_to_gc(vault: Vault) -> None:
    add_jobs(vault, range(50))
    writer = vault.writer("test", checkpoint_jobs=20)
    writer.start()
    for n in range(50, 150):
        writer.add_job(record_json(f"job-{n:05d}", f"a fox number {n}"), [None])
    writer._close()  # as if killed: its checkpoint stays, nothing merged
    killed = set(vault.store.packs.names())
    add_jobs(vault, range(150, 200))
    assert killed <= set(vault.store.packs.names())
    assert sum(1 for _ in vault.entries()) == 200
    assert verify(vault, read_data=True).ok
    assert needed(vault) <= set(packed(vault))
    assert gc(vault, grace_seconds=0).removed > 0  # the killed run's superseded nodes


def test_a_merge_that_fails_keeps_the_snapshot_and_every_pack(
    vault: Vault, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import mjvault.runpacks

    add_jobs(vault, range(20))
    before = set(vault.store.packs.names())

    class NoSpace(PackFileWriter):
        """The merge's packs only: the writer's own keep being written."""

        def _write_buffer(self) -> None:
            raise OSError(28, "No space left on device")

    monkeypatch.setattr(mjvault.runpacks, "PackFileWriter", NoSpace)
    add_jobs(vault, range(20, 120))
    assert "were not merged" in caplog.text
    assert before < set(vault.store.packs.names())
    assert not [p for p in (vault.path / "tmp").iterdir() if p.name.startswith("merge.")]
    assert sum(1 for _ in vault.entries()) == 120
    assert verify(vault, read_data=True).ok


def test_ctrl_c_during_the_merge_leaves_a_sync_s_bookkeeping_done(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The snapshot is published before the merge: an interrupt there must not skip what the
    sync records after its writer commits (history complete, no gap), or the next sync would
    read the whole listing again."""
    import mjvault.writer
    from mjvault.testing.accounts import Account
    from mjvault.testing.server import FakeMidjourney
    from tests.test_sync import TOKEN, run_sync

    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(mjvault.writer, "merge_run_packs", interrupted)
    Vault.init(tmp_path / "vault").close()
    with FakeMidjourney(Account.generate(71, 120), token=TOKEN) as server:
        first = run_sync(tmp_path / "vault", server, page_size=30)
        assert first.jobs_new >= 118 and first.history_complete
        assert "interrupted: the packs of this run were not merged" in caplog.text
        server.reset_stats()
        again = run_sync(tmp_path / "vault", server, page_size=30)
        assert again.jobs_new == 0 and again.stopped_early  # incremental: the state was kept
    with Vault.open(tmp_path / "vault") as reopened:
        assert verify(reopened, read_data=True).ok


def test_each_merged_pack_is_published_and_mapped_as_it_closes(
    vault: Vault, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mjvault.runpacks
    from mjvault.store.repack import Repacker

    add_jobs(vault, range(30))
    events: list[tuple[str, str]] = []

    class Logged(PackFileWriter):
        def finish(self):  # type: ignore[no-untyped-def]
            name, trailer = super().finish()
            events.append(("closed", name))
            return name, trailer

    mapped, remove = Repacker._mapped, Repacker._remove_pack

    def logged_mapped(self: Repacker, name: str, trailer: object) -> None:
        mapped(self, name, trailer)  # type: ignore[arg-type]
        # Durable and mapped: in packs/, every entry located there.
        assert self.store.packs.path(name).exists()
        entries = read_trailer_of(str(self.store.packs.path(name))).entries
        assert {self.store.packs.map().locate(e.object_id).pack for e in entries} == {name}
        events.append(("mapped", name))

    def logged_remove(self: Repacker, name: str) -> None:
        events.append(("removed", name))
        remove(self, name)

    monkeypatch.setattr(mjvault.runpacks, "PackFileWriter", Logged)
    monkeypatch.setattr(mjvault.runpacks, "MERGED_PACK_ENTRIES", 50)
    monkeypatch.setattr(Repacker, "_mapped", logged_mapped)
    monkeypatch.setattr(Repacker, "_remove_pack", logged_remove)
    with vault.writer("test", checkpoint_jobs=25) as writer:
        for n in range(30, 330):
            writer.add_job(record_json(f"job-{n:05d}", f"a fox number {n}"), [None])
    report = writer.merge_report
    assert report is not None and report.packs_after >= 6
    closed = [name for event, name in events if event == "closed"]
    assert len(closed) == report.packs_after
    # Each pack is mapped right after it closes, before the next one closes; the run's old
    # packs go only once the last new one is mapped.
    kinds = [event for event, _ in events]
    first_removal = kinds.index("removed")
    assert kinds[:first_removal] == ["closed", "mapped"] * len(closed)
    assert [name for _, name in events[:first_removal:2]] == closed
    assert set(kinds[first_removal:]) == {"removed"}
    assert len(kinds) - first_removal == report.packs_before
    entries = packed(vault)
    assert len(entries) == len(set(entries))
    assert set(entries) == needed(vault)
    assert verify(vault, read_data=True).ok
    assert sum(1 for _ in vault.entries()) == 330


def test_a_merge_that_fails_after_publishing_some_packs_takes_them_back(
    vault: Vault, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import mjvault.runpacks

    add_jobs(vault, range(20))
    closed: list[str] = []

    class NoSpaceAtTheThird(PackFileWriter):
        def _write_buffer(self) -> None:
            if len(closed) == 2:
                raise OSError(28, "No space left on device")
            super()._write_buffer()

        def finish(self):  # type: ignore[no-untyped-def]
            name, trailer = super().finish()
            closed.append(name)
            return name, trailer

    monkeypatch.setattr(mjvault.runpacks, "PackFileWriter", NoSpaceAtTheThird)
    monkeypatch.setattr(mjvault.runpacks, "MERGED_PACK_ENTRIES", 50)
    add_jobs(vault, range(20, 320))
    assert "were not merged" in caplog.text and len(closed) == 2
    names = set(vault.store.packs.names())
    assert not names & set(closed)  # the two published were removed again
    assert not [p for p in (vault.path / "tmp").iterdir() if p.name.startswith("merge.")]
    entries = packed(vault)
    assert len(entries) == len(set(entries))  # nothing left stored twice
    assert needed(vault) <= set(entries)
    assert verify(vault, read_data=True).ok
    for entry in vault.entries():
        vault.job(entry)
    assert sum(1 for _ in vault.entries()) == 320


# -- kills ---------------------------------------------------------------------------------

MERGER = """
import sys, time
from pathlib import Path
import mjvault.runpacks as runpacks
from mjvault import Vault
from mjvault.store.repack import Repacker

merging = Path(sys.argv[2])
# Several merged packs, each published and mapped as it closes: kills land between them too.
runpacks.MERGED_PACK_ENTRIES = 200
# Pauses between the merge's steps spread it over ~1 s, so a kill at a random moment lands
# in any of them: writing the new pack, publishing it, each removal of an old one.
merge = runpacks.merge_run_packs
def slow_merge(*args, **kwargs):
    merging.write_text(" ".join(args[0].packs.names()))
    return merge(*args, **kwargs)
runpacks.merge_run_packs = slow_merge
import mjvault.writer
mjvault.writer.merge_run_packs = slow_merge
class SlowWriter(runpacks.PackFileWriter):
    def _write_buffer(self):
        time.sleep(0.002)
        super()._write_buffer()
    def finish(self):
        time.sleep(0.05)
        return super().finish()
runpacks.PackFileWriter = SlowWriter
remove = Repacker._remove_pack
def slow_remove(self, name):
    time.sleep(0.02)
    remove(self, name)
Repacker._remove_pack = slow_remove

with Vault.open(sys.argv[1]) as vault:
    with vault.writer("test", checkpoint_jobs=20) as writer:
        for n in range(100, 700):
            record = ('{"id": "job-%05d", "enqueue_time": "2023-05-26 07:38:42", "type": "grid", '
                      '"full_command": "fox %d", "prompt": "fox %d"}' % (n, n, n)).encode()
            writer.add_job(record, [None])
"""


def fresh_copy(template: Path, work: Path) -> None:
    shutil.rmtree(work, ignore_errors=True)
    shutil.copytree(template, work, symlinks=True)


@pytest.mark.slow
def test_sigkill_during_the_merge_never_loses_an_object(tmp_path: Path) -> None:
    template, work, merging = tmp_path / "template", tmp_path / "work", tmp_path / "merging"
    with Vault.init(template) as vault:
        add_jobs(vault, range(100))
    fresh_copy(template, work)
    child = subprocess.Popen([sys.executable, "-c", MERGER, str(work), str(merging)], cwd=ROOT)
    while not merging.exists():
        assert child.poll() is None
        time.sleep(0.001)
    started = time.monotonic()
    assert child.wait(timeout=120) == 0
    duration = time.monotonic() - started
    rng = random.Random(11)
    phases: set[str] = set()
    # Twelve kills, and more (up to 24) until they have landed before, during and after the
    # old packs' removal: the test must prove it catches the moments that matter.
    for trial in itertools.count():
        if trial >= 24 or (trial >= 12 and len(phases) == 3):
            break
        fresh_copy(template, work)
        merging.unlink(missing_ok=True)
        child = subprocess.Popen([sys.executable, "-c", MERGER, str(work), str(merging)], cwd=ROOT)
        while not merging.exists() and child.poll() is None:
            time.sleep(0.001)
        time.sleep(rng.uniform(0, duration * 1.1))
        child.send_signal(signal.SIGKILL)
        child.wait()
        run_packs = set(merging.read_text().split()) - set(os.listdir(template / "packs"))
        with Vault.open(work) as vault:
            on_disk = set(vault.store.packs.names())
            left = run_packs & on_disk
            phases.add("before" if left == run_packs else "after" if not left else "removing")
            report = verify(vault, read_data=True)
            assert report.ok, [p.to_json() for p in report.problems]
            head = vault.head()
            assert head is not None and head.stats["jobs"] == 700
            assert needed(vault) <= set(packed(vault))
            for entry in vault.entries():
                vault.job(entry)
            gc(vault, grace_seconds=0)  # removes what the merge left, if anything
            assert set(packed(vault)) == needed(vault)
            add_jobs(vault, range(700, 720))  # the next writer takes over the lock
            assert verify(vault, read_data=True).ok
    assert phases == {"before", "removing", "after"}, phases
