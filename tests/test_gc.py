"""gc and forget on real vaults: what goes, what stays, and safety beside a running sync."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
import tracemalloc
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mjvault import Vault
from mjvault.durations import parse_duration
from mjvault.errors import JobNotFound, UsageError, VaultLocked
from mjvault.integrity.forget import KeepPolicy, apply_policy, forget_jobs, forget_snapshots
from mjvault.integrity.gc import gc
from mjvault.integrity.verify import verify
from mjvault.snapshots import Snapshot
from tests.conftest import png_bytes, record_json, run_cli

ROOT = Path(__file__).resolve().parents[1]


def add_jobs(vault: Vault, numbers: range, *, source: str = "test", images: int = 2) -> None:
    with vault.writer(source) as writer:
        for n in numbers:
            slots = [writer.put_media(png_bytes(n * 10 + i, 3000)) for i in range(images)]
            writer.add_job(record_json(f"job-{n}", f"prompt {n}"), slots)


def all_objects(vault: Vault) -> set[str]:
    return set(vault.store.iter_ids())


def needed_by_head(vault: Vault) -> set[str]:
    head = vault.head()
    assert head is not None
    return needed_by(vault, [head])


def needed_by(vault: Vault, snapshots: list[Snapshot]) -> set[str]:
    needed: set[str] = set()
    for snapshot in snapshots:
        needed.add(snapshot.id)
        needed |= set(vault.tree.node_ids(snapshot.tree))
        for entry in vault.entries(snapshot):
            needed.add(entry.record)
            needed |= {i for i in entry.images if i is not None}
    return needed


def unreachable(vault: Vault) -> set[str]:
    """Computed the slow, obvious way, to check gc's compact marking against."""
    return all_objects(vault) - needed_by(vault, vault.snapshots()) - dictionaries(vault)


def dictionaries(vault: Vault) -> set[str]:
    """The zstd dictionaries packs name, and the one new packs use: kept while packs exist."""
    from mjvault.store.packfile import read_trailer_of

    store = vault.store
    named = {read_trailer_of(str(store.packs.path(n))).dictionary_id for n in store.packs.names()}
    if store.packs.present():
        named.add(store.packs.map().dictionary())
    return {d for d in named if d is not None}


def make_garbage(vault: Vault, numbers: range) -> set[str]:
    """Objects of jobs that only a forgotten snapshot held."""
    before = all_objects(vault)
    add_jobs(vault, numbers, source="doomed")
    doomed = vault.refs.head()
    assert doomed is not None
    with vault.writer("cleanup") as writer:
        for n in numbers:
            writer.remove_job(f"job-{n}")
    vault.refs.remove_snapshot(doomed)
    return (all_objects(vault) - before) & unreachable(vault)


def test_parse_duration() -> None:
    assert parse_duration("1h") == 3600
    assert parse_duration("90s") == 90
    assert parse_duration("1h30m") == 5400
    assert parse_duration("0") == 0
    assert parse_duration("2d") == 2 * 86400
    for bad in ("", "h", "1x", "-1h", "1h 2"):
        with pytest.raises(UsageError):
            parse_duration(bad)


def test_dry_run_lists_and_gc_removes_only_unreferenced(vault: Vault) -> None:
    add_jobs(vault, range(10))
    garbage = make_garbage(vault, range(100, 105))
    assert len(garbage) >= 15  # 5 records + 10 images + tree nodes / manifest
    kept = needed_by(vault, vault.snapshots())
    dry = gc(vault, grace_seconds=0, dry_run=True)
    assert set(dry.removed_ids) == unreachable(vault) >= garbage
    assert dry.removed_bytes > 10 * 3000
    assert all_objects(vault) >= garbage  # nothing removed by a dry run
    real = gc(vault, grace_seconds=0)
    assert set(real.removed_ids) == set(dry.removed_ids)
    assert real.removed_bytes == dry.removed_bytes
    assert all_objects(vault) == kept
    assert verify(vault, read_data=True).ok
    assert gc(vault, grace_seconds=0).removed == 0


def test_grace_period_keeps_young_unreferenced_objects(vault: Vault) -> None:
    add_jobs(vault, range(3))
    garbage = make_garbage(vault, range(50, 52))
    report = gc(vault)  # default one hour: everything was just written
    assert report.removed == 0 and report.kept_young == len(unreachable(vault))
    assert all_objects(vault) >= garbage
    # An hour and a bit later the same objects go.
    later = gc(vault, now=time.time() + 3700)
    assert set(later.removed_ids) >= garbage and not unreachable(vault)
    # Age is judged per object: an old one goes, a fresh one stays.
    more = make_garbage(vault, range(60, 62))
    packed = {o for o in more if not vault.store.is_loose(o)}
    old = sorted(more - packed)[0]
    os.utime(vault.object_path(old), (time.time() - 7200, time.time() - 7200))
    mixed = gc(vault)
    assert mixed.removed_ids == [old]
    assert all_objects(vault) >= more - {old}
    # A packed object's age is its pack file's: once that is old, its unreferenced objects go.
    assert packed
    for name in vault.store.packs.names():
        os.utime(vault.store.packs.path(name), (time.time() - 7200, time.time() - 7200))
    swept = gc(vault)
    assert packed <= set(swept.removed_ids) and not packed & all_objects(vault)
    assert all_objects(vault) >= more - packed - {old}
    assert verify(vault, read_data=True).ok


def test_a_checkpoint_naming_a_missing_tree_protects_nothing(vault: Vault) -> None:
    add_jobs(vault, range(3))
    make_garbage(vault, range(100, 103))
    (vault.refs.dir / "checkpoint").write_text('{"base": null, "tree": "' + "ab" * 32 + '"}')
    expected = unreachable(vault)
    assert expected and set(gc(vault, grace_seconds=0).removed_ids) == expected
    assert verify(vault, read_data=True).ok


WRITER = """
import sys, time
from pathlib import Path
from mjvault import Vault

def png(n):
    return b"\\x89PNG\\r\\n\\x1a\\n" + n.to_bytes(8, "big") * 400

def record(n):
    return ('{"id": "sync-%d", "enqueue_time": "2023-05-26 07:38:42", "type": "grid", '
            '"full_command": "fox %d --ar 1:1", "prompt": "fox %d"}' % (n, n, n)).encode()

vault = Vault.open(sys.argv[1])
ready, go, stop_after_checkpoint = Path(sys.argv[2]), Path(sys.argv[3]), sys.argv[4] == "1"
writer = vault.writer("midjourney:test", checkpoint_jobs=10_000)
writer.start()
for n in range(20):
    writer.add_job(record(n), [writer.put_media(png(n)), writer.put_media(png(1000 + n))])
writer.checkpoint()   # durable objects and refs/checkpoint, but no snapshot yet
for n in range(20, 25):
    writer.add_job(record(n), [writer.put_media(png(n))])
writer._batch.flush()  # published objects that even the checkpoint does not name yet
ready.touch()
if stop_after_checkpoint:
    time.sleep(600)    # killed here
while not go.exists():
    time.sleep(0.01)
for n in range(25, 40):
    writer.add_job(record(n), [writer.put_media(png(n))])
writer.commit()
"""


def start_writer(vault_dir: Path, tmp: Path, stop: bool) -> tuple[subprocess.Popen[bytes], Path]:
    ready, go = tmp / "ready", tmp / "go"
    child = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(vault_dir), str(ready), str(go), "1" if stop else "0"],
        cwd=ROOT,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 30
    while not ready.exists():
        assert child.poll() is None, child.stderr.read() if child.stderr else b""
        assert time.monotonic() < deadline
        time.sleep(0.01)
    return child, go


def test_gc_beside_a_running_sync_removes_nothing_the_sync_needs(
    vault: Vault, tmp_path: Path
) -> None:
    add_jobs(vault, range(5))
    make_garbage(vault, range(200, 204))
    garbage = unreachable(vault)
    child, go = start_writer(vault.path, tmp_path, stop=False)
    try:
        # The sync holds the lock: gc refuses at once, naming the holder...
        with pytest.raises(VaultLocked, match="locked by pid"):
            gc(Vault.open(vault.path), grace_seconds=0)
        # ...or, asked to wait, runs once the sync has finished. Grace 0 and a clock an hour
        # ahead: only the lock protects the sync's objects here, and it must be enough.
        result: dict[str, object] = {}

        def run_gc() -> None:
            with Vault.open(vault.path) as other:
                result["report"] = gc(other, grace_seconds=0, wait=60, now=time.time() + 3600)

        thread = threading.Thread(target=run_gc)
        thread.start()
        time.sleep(0.5)
        assert thread.is_alive() and "report" not in result  # waiting for the lock
        go.touch()
        assert child.wait(timeout=60) == 0, child.stderr.read() if child.stderr else b""
        thread.join(timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
    report = result["report"]
    with Vault.open(vault.path) as after:
        head = after.head()
        assert head is not None and head.source == "midjourney:test"
        assert head.stats["jobs"] == 45
        assert needed_by_head(after) <= all_objects(after)
        assert verify(after, read_data=True).ok
        # It removed the old garbage and the sync's superseded checkpoint nodes, nothing else.
        assert set(report.removed_ids) >= garbage  # type: ignore[attr-defined]
        assert not unreachable(after)
        assert after.current_index().get("sync-39") is not None


def test_unfinished_sync_checkpoint_survives_gc_and_resumes(vault: Vault, tmp_path: Path) -> None:
    add_jobs(vault, range(5))
    child, _ = start_writer(vault.path, tmp_path, stop=True)
    child.send_signal(signal.SIGKILL)
    child.wait()
    with Vault.open(vault.path) as other:
        tree = json.loads((other.refs.dir / "checkpoint").read_bytes())["tree"]
        in_checkpoint = set(other.tree.node_ids(tree))
        for entry in other.tree.walk(tree):
            in_checkpoint |= {entry.record, *(i for i in entry.images if i is not None)}
        assert len(in_checkpoint) > 60
        report = gc(other, grace_seconds=0)
        assert report.checkpoint_protected
        # The 5 jobs flushed after the checkpoint are unreferenced and may go; the 25 the
        # checkpoint names (5 from HEAD, 20 from the sync) must stay.
        assert report.removed >= 10
        assert in_checkpoint <= all_objects(other)
        assert verify(other, read_data=True).ok
    with Vault.open(vault.path) as resumed:
        writer = resumed.writer("midjourney:test")
        writer.start()
        assert writer.stats.resumed_from_checkpoint
        snapshot = writer.commit()
        assert snapshot is not None and snapshot.stats["jobs"] == 25
        assert verify(resumed, read_data=True).ok
        for n in range(20):
            entry = resumed.entry(f"sync-{n}")
            assert all(resumed.store.exists(i) for i in entry.images if i is not None)


GC_SCRIPT = """
import sys
from pathlib import Path
from mjvault import Vault
from mjvault.integrity.gc import gc
sweeping = Path(sys.argv[2])
gc(Vault.open(sys.argv[1]), grace_seconds=0, on_object=lambda: sweeping.touch())
"""


def fresh_copy(template: Path, work: Path) -> None:
    # Hard links: a copy in a fraction of the time, and gc only ever unlinks names and
    # writes new files, except in the LMDB caches under index/, which are copied.
    shutil.rmtree(work, ignore_errors=True)
    shutil.copytree(
        template, work, symlinks=True, copy_function=os.link, ignore=shutil.ignore_patterns("index")
    )
    shutil.copytree(template / "index", work / "index", symlinks=True)


def stored_objects(root: Path) -> int:
    """Object copies on disk, loose files and pack entries, read without the pack map."""
    from mjvault.store.packfile import read_trailer_of

    loose = sum(1 for p in (root / "objects").rglob("*") if p.is_file())
    packs = root / "packs"
    packed = (
        sum(len(read_trailer_of(str(p)).entries) for p in packs.iterdir()) if packs.is_dir() else 0
    )
    return loose + packed


@pytest.mark.slow
def test_sigkill_during_gc_never_damages_the_vault(tmp_path: Path) -> None:
    template = tmp_path / "template"
    with Vault.init(template) as vault:
        add_jobs(vault, range(30), images=1)
        make_garbage(vault, range(1000, 1600))
        # Their records share a pack with live ones: gc rewrites that pack.
        forget_jobs(vault, [f"job-{n}" for n in range(25, 30)])
        assert vault.store.packs.names()
    rng = random.Random(5)
    work, sweeping = tmp_path / "work", tmp_path / "sweeping"
    fresh_copy(template, work)
    started = time.monotonic()
    child = subprocess.Popen([sys.executable, "-c", GC_SCRIPT, str(work), str(sweeping)], cwd=ROOT)
    while not sweeping.exists():
        time.sleep(0.001)
    sweep_started = time.monotonic()
    child.wait()
    duration, sweep = time.monotonic() - started, time.monotonic() - sweep_started
    midway = 0
    # Twelve kills, and more (up to 24) until one has landed mid-sweep: on a loaded machine
    # the sweep's share of the run varies, and the test must prove it can catch that moment.
    for trial in range(24):
        if trial >= 12 and midway:
            break
        fresh_copy(template, work)
        sweeping.unlink(missing_ok=True)
        before = stored_objects(work)
        child = subprocess.Popen(
            [sys.executable, "-c", GC_SCRIPT, str(work), str(sweeping)], cwd=ROOT
        )
        if trial % 2:  # any moment of the run, start-up and marking included
            time.sleep(rng.uniform(0.05, duration))
        else:  # a moment of the sweep, where files are being removed
            while not sweeping.exists() and child.poll() is None:
                time.sleep(0.001)
            time.sleep(rng.uniform(0, sweep * 0.8))
        child.send_signal(signal.SIGKILL)
        child.wait()
        after = stored_objects(work)
        with Vault.open(work) as vault:
            report = verify(vault, read_data=True)
            assert report.ok, [p.to_json() for p in report.problems]
            assert vault.head() is not None and sum(1 for _ in vault.entries()) == 25
            midway += before > after and bool(unreachable(vault))
            gc(vault, grace_seconds=0)  # the next gc finishes the job
            assert not unreachable(vault)
            assert verify(vault, read_data=True).ok
    assert midway >= 1  # kills really landed in the middle of sweeps (2-4 of 12 typically)


# -- forget --------------------------------------------------------------------------------


def fake_snapshot(n: int, when: datetime) -> Snapshot:
    return Snapshot(f"{n:064x}", when, "00" * 32, None, "test", "host", "mjvault", {"jobs": n})


def test_keep_policies_follow_restic() -> None:
    start = datetime(2026, 1, 1, 12, tzinfo=UTC)
    # Two snapshots a day for 60 days.
    snaps = [fake_snapshot(i, start + timedelta(hours=12 * i)) for i in range(120)]
    newest = snaps[-1]
    last = apply_policy(snaps, KeepPolicy(last=3))
    assert [d.snapshot for d in last if d.keep] == snaps[-1:-4:-1]
    daily = [d for d in apply_policy(snaps, KeepPolicy(daily=7)) if d.keep]
    assert len(daily) == 7 and daily[0].snapshot == newest
    days = {d.snapshot.time.astimezone().date() for d in daily}
    assert len(days) == 7  # one per day, the newest of it
    monthly = [d for d in apply_policy(snaps, KeepPolicy(monthly=12)) if d.keep]
    assert len({(d.snapshot.time.astimezone().year, d.snapshot.time.astimezone().month) for d in monthly}) == len(monthly)  # fmt: skip
    head_kept = apply_policy(snaps, KeepPolicy(last=1), protected={snaps[0].id: "HEAD"})
    assert {d.snapshot.id for d in head_kept if d.keep} == {snaps[0].id, newest.id}
    with pytest.raises(UsageError):
        apply_policy(snaps, KeepPolicy())


@settings(max_examples=60, deadline=None)
@given(
    hours=st.lists(st.integers(0, 24 * 400), min_size=1, max_size=40, unique=True),
    last=st.none() | st.integers(0, 10),
    daily=st.none() | st.integers(0, 10),
    weekly=st.none() | st.integers(0, 10),
)
def test_keep_policy_properties(
    hours: list[int], last: int | None, daily: int | None, weekly: int | None
) -> None:
    policy = KeepPolicy(last=last, daily=daily, weekly=weekly)
    if policy.empty:
        return
    base = datetime(2025, 1, 1, tzinfo=UTC)
    snaps = [fake_snapshot(i, base + timedelta(hours=h)) for i, h in enumerate(hours)]
    decisions = apply_policy(snaps, policy)
    kept = [d for d in decisions if d.keep]
    assert len(decisions) == len(snaps)
    assert len(kept) <= (last or 0) + (daily or 0) + (weekly or 0)
    if last or daily or weekly:
        assert decisions[0].keep  # the newest is always kept by any non-zero rule
    if last is not None:
        newest = sorted(snaps, key=lambda s: s.time, reverse=True)[:last]
        assert {s.id for s in newest} <= {d.snapshot.id for d in kept}
    # Deterministic: same input, same answer, whatever the input order.
    again = apply_policy(list(reversed(snaps)), policy)
    assert [(d.snapshot.id, d.keep) for d in again] == [(d.snapshot.id, d.keep) for d in decisions]


def test_forget_keep_last_then_gc_reclaims_bytes(vault: Vault) -> None:
    add_jobs(vault, range(5))
    with vault.writer("round 2") as writer:
        for n in range(5):
            writer.remove_job(f"job-{n}")
        writer.add_job(record_json("job-new"), [writer.put_media(png_bytes(777, 4000))])
    add_jobs(vault, range(10, 12))
    assert len(vault.snapshots()) == 3
    dry = forget_snapshots(vault, policy=KeepPolicy(last=1), dry_run=True)
    assert len(dry.forgotten) == 2 and len(vault.snapshots()) == 3
    report = forget_snapshots(vault, policy=KeepPolicy(last=1))
    assert len(report.forgotten) == 2
    assert [s.id for s in vault.snapshots()] == [vault.refs.head()]
    swept = gc(vault, grace_seconds=0)
    assert swept.removed_bytes >= 5 * 2 * 3000  # the five forgotten jobs' images
    assert verify(vault, read_data=True).ok
    with pytest.raises(UsageError, match="HEAD"):
        forget_snapshots(vault, snapshot_ids=["HEAD"])


def test_forget_job_removes_it_from_every_snapshot_and_gc_reclaims_it(vault: Vault) -> None:
    add_jobs(vault, range(4))
    add_jobs(vault, range(4, 6))
    add_jobs(vault, range(6, 7))
    victim = vault.entry("job-1")
    victim_objects = {victim.record, *(i for i in victim.images if i is not None)}
    old_head = vault.head()
    assert old_head is not None
    report = forget_jobs(vault, ["job-1"])
    assert len(report.rewritten) == 3
    snapshots = vault.snapshots()
    assert len(snapshots) == 3 and not set(report.rewritten) & {s.id for s in snapshots}
    for snapshot in snapshots:
        assert "job-1" not in {e.job_id for e in vault.entries(snapshot)}
        assert snapshot.stats["forgotten"] == 1
    head = vault.head()
    assert head is not None and head.id == report.rewritten[old_head.id]
    assert head.time == old_head.time and head.source == old_head.source
    assert head.stats["jobs"] == old_head.stats["jobs"] - 1
    assert head.stats["images"] == old_head.stats["images"] - 2
    # Parents follow the rewrite: the history is still a chain.
    assert head.parent == snapshots[1].id and snapshots[1].parent == snapshots[2].id
    assert (
        vault.current_index().get("job-1") is None
        and vault.current_index().get("job-2") is not None
    )
    assert not vault.current_index().search(words=["prompt", "1"])
    swept = gc(vault, grace_seconds=0)
    assert victim_objects <= set(swept.removed_ids)
    assert not any(vault.store.exists(o) for o in victim_objects)
    assert verify(vault, read_data=True).ok
    with pytest.raises(JobNotFound):
        forget_jobs(vault, ["job-1"])


def test_forget_and_gc_from_the_command_line(vault: Vault) -> None:
    add_jobs(vault, range(3))
    add_jobs(vault, range(3, 5))
    path = str(vault.path)
    vault.close()
    dry = run_cli("--vault", path, "--json", "gc", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    forgot = run_cli("--vault", path, "forget", "--job", "job-0", "--prune", "--grace", "0")
    assert forgot.returncode == 0, forgot.stderr
    assert b"rewrite 2 snapshots" in forgot.stdout and b"gc removed" in forgot.stdout
    policy = run_cli("--vault", path, "forget", "--keep-last", "1", "--dry-run")
    assert policy.returncode == 0 and b"would forget 1 snapshots" in policy.stdout
    none = run_cli("--vault", path, "forget")
    assert none.returncode == 2 and b"exactly one of" in none.stderr
    checked = run_cli("--vault", path, "verify", "--read-data")
    assert checked.returncode == 0, checked.stderr


ids = st.text(alphabet="0123456789abcdef", min_size=64, max_size=64)


@settings(max_examples=100, deadline=None)
@given(marked=st.lists(ids, max_size=60), others=st.lists(ids, max_size=60), data=st.data())
def test_marks_answer_like_a_set_in_any_order(
    marked: list[str], others: list[str], data: st.DataObject
) -> None:
    from mjvault.integrity.reachability import Marks

    marks = Marks()
    half = len(marked) // 2
    for object_id in marked[:half]:
        marks.add(object_id)
    probes = data.draw(st.permutations(marked[:half] + others))
    for probe in probes:  # queries between additions: arrays are re-sorted as needed
        assert (probe in marks) == (probe[:16] in {m[:16] for m in marked[:half]})
    for object_id in marked[half:]:
        marks.add(object_id)
    for probe in data.draw(st.permutations(marked + others)):
        assert (probe in marks) == (probe[:16] in {m[:16] for m in marked})
    assert marks.references == len(marked)


def test_forget_job_rewrites_an_unfinished_sync_checkpoint(vault: Vault, tmp_path: Path) -> None:
    add_jobs(vault, range(3))
    child, _ = start_writer(vault.path, tmp_path, stop=True)
    child.send_signal(signal.SIGKILL)
    child.wait()
    with Vault.open(vault.path) as other:
        # job-1 is in HEAD and in the checkpoint; sync-3 only in the checkpoint.
        report = forget_jobs(other, ["job-1", "sync-3"])
        assert report.checkpoint_rewritten and len(report.rewritten) == 1
        writer = other.writer("midjourney:test")
        writer.start()
        assert writer.stats.resumed_from_checkpoint  # its base followed HEAD's rewrite
        snapshot = writer.commit()
        assert snapshot is not None
        held = {e.job_id for e in other.entries()}
        assert {"job-0", "job-2", "sync-0", "sync-19"} <= held
        assert not {"job-1", "sync-3"} & held
        assert verify(other, read_data=True).ok


@settings(max_examples=100, deadline=None)
@given(parts=st.lists(st.tuples(st.integers(0, 10_000), st.sampled_from("smhdw")), min_size=1, max_size=5))  # fmt: skip
def test_parse_duration_adds_its_parts(parts: list[tuple[int, str]]) -> None:
    text = "".join(f"{n}{unit}" for n, unit in parts)
    seconds = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
    assert parse_duration(text) == sum(n * seconds[u] for n, u in parts)
    assert parse_duration(text.upper()) == parse_duration(text)


def test_gc_keeps_the_dictionary_its_packs_were_written_with(vault: Vault) -> None:
    """A dictionary is a loose object no snapshot names: only the packs that use it do. A gc
    that swept it would leave every record packed against it unreadable."""
    add_jobs(vault, range(600), images=1)  # enough records to train one
    dictionary = vault.store.packs.map().dictionary()
    assert dictionary is not None and vault.store.is_loose(dictionary)
    add_jobs(vault, range(600, 603), images=1)
    # A new map, as after `index rebuild`: nothing but the packs says which dictionary is used.
    vault.close()
    shutil.rmtree(vault.path / "index")
    with Vault.open(vault.path) as again:
        assert (
            again.current_index().job_count() == 603
        )  # rebuilt from the snapshots, as any command would
        gc(again, grace_seconds=0)
        assert again.store.is_loose(dictionary)
        assert verify(again, read_data=True).ok
        assert b"prompt 7" in again.read_object(again.entry("job-7").record)


def _marking_peak(tmp_path: Path, jobs: int) -> int:
    """tracemalloc's peak in bytes while gc marks a vault of ``jobs`` jobs whose every image a
    checkout view shows."""
    from mjvault.integrity.reachability import mark_reachable
    from mjvault.views import checkout
    from mjvault.views.links import LinkKind
    from mjvault.views.registry import ViewDefinition

    with Vault.init(tmp_path / f"vault-{jobs}") as vault:
        add_jobs(vault, range(jobs))
        view = ViewDefinition(
            name="all", directory=tmp_path / f"view-{jobs}", template="{job_id}_{index}.{ext}",
            link=LinkKind.SYMLINK,
        )  # fmt: skip
        assert checkout(vault, view).added == jobs * 2
        tracemalloc.start()
        try:
            marks, report = mark_reachable(vault)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    assert report.views == 1 and marks.references > jobs * 5  # nodes; a record; 2 images, twice
    return peak


def test_marking_streams_what_views_show(tmp_path: Path) -> None:
    """A view's objects are marked as they are read, not gathered into a set first (a view of
    a million jobs shows millions of images; a set holds ~130 bytes per id). Both views are
    longer than two reads of their list (1,000 rows each), so what may grow is the marks
    alone: 8 bytes a reference, +112 KB here (measured +190 KB; +1.28 MB with a set)."""
    small = _marking_peak(tmp_path, 1200)
    large = _marking_peak(tmp_path, 4000)
    assert large - small < 400_000, (small, large)


@pytest.mark.parametrize(
    "run", ["adds nothing", "is interrupted", "adds and removes a job", "adds jobs"]
)
def test_the_first_run_on_a_fresh_vault_leaves_nothing_unreferenced(vault: Vault, run: str) -> None:
    """A fresh vault has no tree: its first writer must not store an empty one to start from,
    which nothing would reference once the run ends (with no snapshot, or with its own)."""
    writer = vault.writer("test")
    writer.start()
    dropped: set[str] = set()  # what the run stored for a job it removed again
    if run in ("adds jobs", "adds and removes a job"):
        image = writer.put_media(png_bytes(1))
        writer.add_job(record_json("job-1"), [image])
    if run == "adds and removes a job":
        writer.remove_job("job-1")
        dropped = {image, writer.record_id(record_json("job-1"))}
    if run == "is interrupted":
        writer.abort()
    else:
        writer.commit()
    assert (vault.head() is None) == (run != "adds jobs")
    dry = gc(vault, grace_seconds=0, dry_run=True)
    assert (dry.unreferenced, set(dry.removed_ids)) == (len(dropped), dropped)
    assert verify(vault, read_data=True).ok
