"""`mjvault pack`: a vault written before packs (format 1, all loose) migrates, and small packs
merge, losing nothing whatever the moment a run is killed."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from config_helpers import Result, isolate, run_cli

from mjvault import Vault
from mjvault.integrity.forget import forget_jobs
from mjvault.integrity.gc import gc
from mjvault.integrity.pack import pack, pack_after_write
from mjvault.integrity.verify import verify
from mjvault.store import objects
from mjvault.store.packfile import read_trailer_of
from mjvault.store.repack import loose_small_plaintext, small_packs
from tests.conftest import PASSPHRASE, png_bytes, record_json

ROOT = Path(__file__).resolve().parents[1]


def add_jobs(vault: Vault, numbers: range, *, source: str = "test") -> None:
    with vault.writer(source) as writer:
        for n in numbers:
            writer.add_job(
                record_json(f"job-{n:05d}", f"a red fox number {n} in the snow --ar 3:2"),
                [writer.put_media(png_bytes(n, 300))],
            )


def make_version_1(path: Path, jobs: int, *, encrypted: bool = False) -> None:
    """A vault as format version 1 wrote it: every object loose, no packs/, version 1."""
    previous = objects.PACK_SMALL_OBJECTS
    objects.PACK_SMALL_OBJECTS = False
    try:
        if encrypted:
            from tests.conftest import CHEAP_KDF

            vault = Vault.init(path, encrypt=True, passphrase=PASSPHRASE, kdf=CHEAP_KDF)
        else:
            vault = Vault.init(path)
        with vault:
            add_jobs(vault, range(jobs // 2))
            add_jobs(vault, range(jobs // 2, jobs), source="second")
    finally:
        objects.PACK_SMALL_OBJECTS = previous
    config = json.loads((path / "config").read_bytes())
    (path / "config").write_text(json.dumps(dict(config, version=1)))
    assert not (path / "packs").exists()


def contents(vault: Vault) -> dict[str, tuple[bytes, list[bytes]]]:
    """Every job's record and image bytes, as a reader sees them."""
    found = {}
    for entry in vault.entries():
        images = [vault.store.read(i) for i in entry.images if i is not None]
        found[entry.job_id] = (vault.record_json(entry), images)
    return found


def loose_small(vault: Vault) -> list[str]:
    return [i for i in vault.store.iter_loose_ids() if loose_small_plaintext(vault.store, i)]


def packed_entries(root: Path) -> int:
    packs = root / "packs"
    return sum(len(read_trailer_of(str(p)).entries) for p in packs.iterdir())


@pytest.mark.parametrize("encrypted", [False, True])
def test_a_version_1_vault_is_packed_by_mjvault_pack(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    encrypted: bool,
) -> None:
    isolate(monkeypatch, tmp_path)
    path = tmp_path / "old"
    jobs = 600 if not encrypted else 60
    make_version_1(path, jobs, encrypted=encrypted)
    monkeypatch.setenv("MJVAULT_PASSPHRASE", PASSPHRASE)
    with Vault.open(path, passphrase=PASSPHRASE) as old:
        before = contents(old)
        small = loose_small(old)
        # Records and tree nodes (two snapshots' trees), all in files of their own.
        assert len(before) == jobs and len(small) > jobs
    dry = run_cli(capsys, "--vault", str(path), "--json", "pack", "--dry-run")
    assert dry.code == 0, dry
    planned = json.loads(dry.out)
    assert planned["loose_packed"] == len(small) and planned["packs_written"] == 0
    assert not (path / "packs").exists()

    done = run_cli(capsys, "--vault", str(path), "--json", "pack")
    assert done.code == 0, done
    report = json.loads(done.out)
    assert report["loose_packed"] == report["loose_removed"] == len(small)
    assert report["packs_written"] >= 1
    assert json.loads((path / "config").read_bytes())["version"] == 3
    with Vault.open(path, passphrase=PASSPHRASE) as packed:
        assert not loose_small(packed)
        assert contents(packed) == before
        assert verify(packed, read_data=True).ok
        # What stays loose: one image per job, two manifests, and the dictionary if trained.
        loose = sum(1 for _ in packed.store.iter_loose_ids())
        dictionary = packed.store.packs.map().dictionary()
        assert loose == jobs + 2 + (dictionary is not None)
        if not encrypted:
            assert dictionary is not None  # 600 records: enough to train one
    again = run_cli(capsys, "--vault", str(path), "--json", "pack")
    assert again.code == 0 and json.loads(again.out)["packs_written"] == 0
    human = run_cli(capsys, "--vault", str(path), "pack")
    assert human.code == 0 and "packed 0 loose objects" in human.out


def test_pack_help_shows_examples(capsys: pytest.CaptureFixture[str]) -> None:
    shown: Result = run_cli(capsys, "pack", "--help")
    assert shown.code == 0 and "mjvault pack --dry-run" in shown.out


def test_small_packs_are_merged_and_read_back(vault: Vault) -> None:
    for day in range(6):  # six daily syncs: six small packs
        add_jobs(vault, range(day * 10, day * 10 + 10), source=f"day {day}")
    before = contents(vault)
    assert len(small_packs(vault.store)) >= 6
    entries = packed_entries(vault.path)
    report = pack(vault)
    assert report.packs_merged >= 6 and report.packs_written == 1
    assert vault.store.packs.names() and len(small_packs(vault.store)) == 1
    assert packed_entries(vault.path) == entries  # every object kept, once
    with Vault.open(vault.path) as fresh:  # a reader whose map is reconciled from scratch
        assert contents(fresh) == before
        assert verify(fresh, read_data=True).ok


def test_automatic_packing_waits_for_small_packs_to_pile_up(vault: Vault) -> None:
    for day in range(4):
        add_jobs(vault, range(day * 5, day * 5 + 5), source=f"day {day}")
    count = len(small_packs(vault.store))
    assert pack_after_write(vault, count) is None  # not more than the limit: nothing to do
    assert pack_after_write(vault, 0) is None  # turned off
    assert len(small_packs(vault.store)) == count
    done = pack_after_write(vault, count - 1)
    assert done is not None and done.packs_merged == count
    assert len(small_packs(vault.store)) == 1
    assert verify(vault, read_data=True).ok


def test_gc_merges_small_packs_once_they_pile_up_and_keeps_young_garbage(vault: Vault) -> None:
    for day in range(5):
        add_jobs(vault, range(day * 5, day * 5 + 5), source=f"day {day}")
    forget_jobs(vault, ["job-00001"])
    gone = vault.store.packs.names()
    report = gc(vault, auto_pack_after=3)  # default grace: every object is young
    assert report.packs_rewritten >= 5 and report.removed == 0 and report.kept_young > 0
    assert len(small_packs(vault.store)) == 1 and not set(gone) & set(vault.store.packs.names())
    # Young unreferenced objects were carried over, not dropped.
    assert gc(vault, grace_seconds=0).removed == report.kept_young
    assert verify(vault, read_data=True).ok


def test_a_no_op_write_leaves_packs_alone_and_costs_a_listing(vault: Vault) -> None:
    for day in range(40):
        add_jobs(vault, range(day, day + 1), source=f"day {day}")
    merged = pack_after_write(vault, 32)
    assert merged is not None and len(vault.store.packs.names()) == 1
    names = vault.store.packs.names()
    started = time.perf_counter()
    for _ in range(100):
        assert pack_after_write(vault, 32) is None
    per_call = (time.perf_counter() - started) / 100
    assert vault.store.packs.names() == names
    print(f"no-op automatic packing check: {per_call * 1e6:.0f} µs")


def test_import_and_gc_merge_small_packs_once_they_pile_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    isolate(monkeypatch, tmp_path)
    monkeypatch.setenv("MJVAULT_PACK_AUTO_AFTER", "3")
    path = tmp_path / "vault"
    with Vault.init(path) as vault:
        for day in range(3):
            add_jobs(vault, range(day * 5, day * 5 + 5), source=f"day {day}")
        assert len(small_packs(vault.store)) == 3  # one per run: its records and nodes merged
    folder = tmp_path / "archive" / "2023" / "2023-05" / "2023-05-26"
    folder.mkdir(parents=True)
    (folder / "20230526-000001_job-x.json").write_bytes(record_json("job-x", "an owl"))
    (folder / "20230526-000001_job-x-1.png").write_bytes(png_bytes(99, 300))
    imported = run_cli(capsys, "--vault", str(path), "--json", "import", str(tmp_path / "archive"))
    assert imported.code == 0, imported
    assert json.loads(imported.out)["packing"]["packs_merged"] == 4
    with Vault.open(path) as vault:
        assert len(small_packs(vault.store)) == 1
        add_jobs(vault, range(100, 103), source="later")
    quiet = run_cli(capsys, "--vault", str(path), "gc")
    assert quiet.code == 0 and "rewrote" not in quiet.out  # two small packs: not yet
    with Vault.open(path) as vault:
        for day in range(3):
            add_jobs(vault, range(200 + day, 201 + day), source=f"more {day}")
    swept = run_cli(capsys, "--vault", str(path), "gc")
    assert swept.code == 0 and "rewrote 5 packs into 1" in swept.out
    assert run_cli(capsys, "--vault", str(path), "verify", "--read-data").code == 0


def damage_an_entry(vault: Vault, pack_name: str) -> str:
    """Flip a byte inside one packed object (its pack's trailer stays sound)."""
    path = vault.store.packs.path(pack_name)
    entry = read_trailer_of(str(path)).entries[0]
    data = bytearray(path.read_bytes())
    data[entry.offset + entry.length - 2] ^= 0xFF
    os.chmod(path, 0o644)
    path.write_bytes(bytes(data))
    return entry.hex_id


def test_pack_leaves_a_damaged_pack_as_it_is_and_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    isolate(monkeypatch, tmp_path)
    path = tmp_path / "vault"
    with Vault.init(path) as vault:
        for day in range(3):
            add_jobs(vault, range(day * 5, day * 5 + 5), source=f"day {day}")
        victim = sorted(vault.store.packs.names())[0]
        damage_an_entry(vault, victim)
    result = run_cli(capsys, "--vault", str(path), "pack")
    assert result.code == 3 and "Traceback" not in result.err
    assert f"pack {victim[:12]} not merged" in result.err and "verify --repair" in result.err
    with Vault.open(path) as vault:
        names = vault.store.packs.names()
        assert victim in names and len(names) == 2  # the others were merged


def test_gc_stops_before_sweeping_when_a_pack_trailer_is_damaged(vault: Vault) -> None:
    from mjvault.errors import IntegrityError

    add_jobs(vault, range(5))
    add_jobs(vault, range(5, 10), source="two")
    forget_jobs(vault, ["job-00001"])
    victim = vault.store.packs.path(vault.store.packs.names()[0])
    os.chmod(victim, 0o644)
    with victim.open("r+b") as handle:
        handle.seek(-30, os.SEEK_END)
        handle.write(b"\0" * 8)
    vault.store.packs.map().forget_number(victim.name)  # as a fresh map would see it
    loose = set(vault.store.iter_loose_ids())
    with pytest.raises(IntegrityError, match="damaged"):
        gc(vault, grace_seconds=0)
    assert set(vault.store.iter_loose_ids()) == loose and victim.exists()


# -- kills ---------------------------------------------------------------------------------

# Runs `pack` or a repacking gc, killed with SIGKILL on the Nth call of a chosen step (or not at
# all), with packs of at most 64 KiB of plaintext so that a run publishes many of them.
KILLED = """
import importlib, os, signal, sys
import mjvault.store.packs
from mjvault import Vault
from mjvault.integrity.gc import gc
from mjvault.integrity.pack import pack

mjvault.store.packs.PACK_PLAINTEXT_LIMIT = 64 * 1024
root, what, point, nth, started = sys.argv[1:6]
if point != "none":
    module, owner, name = point.rsplit(".", 2)
    cls = getattr(importlib.import_module(module), owner)
    original, calls = getattr(cls, name), [0]
    def killed(*args, **kwargs):
        calls[0] += 1
        if calls[0] == int(nth):
            os.kill(os.getpid(), signal.SIGKILL)
        return original(*args, **kwargs)
    setattr(cls, name, killed)
vault = Vault.open(root)
open(started, "w").close()
if what == "pack":
    pack(vault)
else:
    gc(vault, grace_seconds=0)
"""

KILL_POINTS = [
    ("mjvault.store.objects.WriteBatch._publish_pack", 1),  # a pack in tmp/, not renamed
    ("mjvault.store.objects.WriteBatch._publish_pack", 2),
    ("mjvault.index.packmap.PackMap.add", 2),  # renamed, not mapped
    ("mjvault.index.packmap.PackMap.move", 1),  # mapped, old copies still preferred
    ("mjvault.index.packmap.PackMap.remove", 1),  # an old pack about to be dropped
    ("mjvault.store.repack.Repacker._remove_pack", 2),
    ("mjvault.store.repack.Repacker._remove_loose", 40),  # loose files half removed
]


def fresh_copy(template: Path, work: Path) -> None:
    shutil.rmtree(work, ignore_errors=True)
    shutil.copytree(template, work, symlinks=True)


def run_killed(work: Path, what: str, point: str, nth: int, delay: float | None) -> int:
    started = work.parent / "started"
    started.unlink(missing_ok=True)
    child = subprocess.Popen(
        [sys.executable, "-c", KILLED, str(work), what, point, str(nth), str(started)], cwd=ROOT
    )
    if delay is not None:
        while not started.exists() and child.poll() is None:
            time.sleep(0.001)
        time.sleep(delay)
        child.send_signal(signal.SIGKILL)
    return child.wait(timeout=120)


def check_after_kill(work: Path, before: dict[str, tuple[bytes, list[bytes]]]) -> None:
    with Vault.open(work) as vault:
        report = verify(vault, read_data=True)
        assert report.ok, [p.to_json() for p in report.problems]
        assert contents(vault) == before


def build_template(template: Path) -> dict[str, tuple[bytes, list[bytes]]]:
    make_version_1(template, 120)
    with Vault.open(template) as vault:
        for day in range(4):  # small packs to merge, beside the loose objects
            add_jobs(vault, range(1000 + day * 5, 1005 + day * 5), source=f"day {day}")
        forget_jobs(vault, [f"job-{n:05d}" for n in range(1000, 1003)])  # garbage in packs
        return contents(vault)


@pytest.mark.slow
def test_sigkill_during_pack_never_loses_an_object(tmp_path: Path) -> None:
    template, work = tmp_path / "template", tmp_path / "work"
    before = build_template(template)
    fresh_copy(template, work)
    started = time.monotonic()
    assert run_killed(work, "pack", "none", 0, None) == 0
    duration = time.monotonic() - started
    rng = random.Random(11)
    trials = [(point, nth, None) for point, nth in KILL_POINTS]
    trials += [("none", 0, rng.uniform(0.05, duration)) for _ in range(4)]
    killed = 0
    missed = []
    for point, nth, delay in trials:
        fresh_copy(template, work)
        code = run_killed(work, "pack", point, nth, delay)
        killed += code == -signal.SIGKILL
        if code != -signal.SIGKILL and delay is None:
            missed.append((point, nth, code))
        check_after_kill(work, before)
        with Vault.open(work) as vault:  # the rerun finishes the job
            pack(vault)
            assert not loose_small(vault)
            assert json.loads((work / "config").read_bytes())["version"] == 3
        check_after_kill(work, before)
    assert killed >= len(KILL_POINTS), missed  # every chosen step was reached


@pytest.mark.slow
def test_sigkill_during_a_repacking_gc_never_loses_a_reachable_object(tmp_path: Path) -> None:
    template, work = tmp_path / "template", tmp_path / "work"
    build_template(template)
    with Vault.open(template) as vault:
        pack(vault)
        # Garbage in every pack: each is rewritten.
        forget_jobs(vault, [f"job-{n:05d}" for n in range(0, 120, 7)])
        before = contents(vault)
    points = [p for p in KILL_POINTS if "loose" not in p[0] and "_publish_pack" not in p[0]]
    points += [("mjvault.store.objects.WriteBatch._publish_pack", 1)]
    killed = 0
    for point, nth in points:
        fresh_copy(template, work)
        killed += run_killed(work, "gc", point, nth, None) == -signal.SIGKILL
        check_after_kill(work, before)
        with Vault.open(work) as vault:
            gc(vault, grace_seconds=0)
            assert gc(vault, grace_seconds=0, dry_run=True).unreferenced == 0
        check_after_kill(work, before)
    assert killed == len(points)
    assert os.path.isdir(work / "packs")
