"""Pruning a remote: ``forget --remote`` and ``gc --remote``, their lease, on real storage
(folders, moto's S3 server on 127.0.0.1, and Ceph RGW / Azurite when their fixtures exist)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from mjvault import Vault
from mjvault.integrity.forget import KeepPolicy, forget_jobs
from mjvault.remotes.backend import Backend
from mjvault.remotes.clone import clone
from mjvault.remotes.config import RemoteSpec, normalise_url, open_backend, save_spec
from mjvault.remotes.lease import (
    PRUNE_KEY,
    PUSH_PREFIX,
    RemoteBusy,
    read_lease,
    take_prune_lease,
    take_push_lease,
)
from mjvault.remotes.prune import forget_remote, gc_remote
from mjvault.remotes.push import push
from mjvault.remotes.remote import object_key
from mjvault.remotes.session import connect
from mjvault.remotes.verify import verify_remote
from mjvault.testing.objectstore import FaultProxy, moto_executable
from tests.conftest import CHEAP_KDF, PASSPHRASE, png_bytes, record_json, run_cli

KINDS = ["folder", "s3", "ceph", "azure"]
SERVICE_FIXTURES = {"s3": "moto", "ceph": "ceph_rgw", "azure": "azurite"}


@pytest.fixture(params=KINDS)
def spec(request: pytest.FixtureRequest, tmp_path: Path) -> RemoteSpec:
    kind = request.param
    if kind == "folder":
        return RemoteSpec("offsite", normalise_url(str(tmp_path / "remote")))
    if kind == "s3" and moto_executable() is None:
        pytest.skip("moto[server] not installed")
    try:
        service = request.getfixturevalue(SERVICE_FIXTURES[kind])
    except pytest.FixtureLookupError:
        pytest.skip(f"no {SERVICE_FIXTURES[kind]} fixture in this suite")
    made: RemoteSpec = service.spec("offsite")
    return made


def add_jobs(vault: Vault, count: int, start: int = 0) -> None:
    with vault.writer("test") as writer:
        for n in range(start, start + count):
            image = writer.put_media(png_bytes(n, 256))
            writer.add_job(record_json(f"job-{n}", f"prompt {n} fox"), [image, None])


def push_to(vault: Vault, spec: RemoteSpec, **kw: object):  # type: ignore[no-untyped-def]
    with connect(vault, spec, passphrase=PASSPHRASE, create=True, kdf=CHEAP_KDF) as link:
        return push(vault, link, **kw)  # type: ignore[arg-type]


def keys(backend: Backend) -> dict[str, int]:
    """Every key of the remote but the leases, with its size."""
    return {m.key: m.size for m in backend.list_meta("") if not m.key.startswith("locks/")}


def forgotten_job_remote(tmp_path: Path, spec: RemoteSpec, *, encrypt: bool = False) -> Vault:
    """A remote holding three snapshots: the first with job-3, then two without it (the
    vault forgot job-3 after the first push)."""
    if encrypt:
        spec = RemoteSpec(**{**spec.to_json(), "encrypt": True})  # type: ignore[arg-type]
    vault = Vault.init(tmp_path / "src")
    save_spec(vault.path, spec)
    add_jobs(vault, 20)
    assert push_to(vault, spec).ok
    forget_jobs(vault, ["job-3"])
    add_jobs(vault, 5, start=20)
    assert push_to(vault, spec).ok
    return vault


def job3_image(vault: Vault) -> str:
    return vault.store.name_of(png_bytes(3, 256))


def test_forget_and_gc_on_a_remote_reclaim_the_forgotten_job(
    spec: RemoteSpec, tmp_path: Path
) -> None:
    vault = forgotten_job_remote(tmp_path, spec)
    backend = open_backend(spec)
    image = job3_image(vault)
    assert backend.exists(object_key(image))
    before = sum(keys(backend).values())
    with connect(vault, spec) as link:
        report = forget_remote(vault.refs.resolve, link, policy=KeepPolicy(last=1))
        assert len(report.forgotten) == 2
        assert len(link.remote.snapshot_ids()) == 1
        swept = gc_remote(link, grace_seconds=0, scratch_dir=tmp_path / "scratch")
    assert swept.removed >= 2 and swept.removed_bytes > 0
    assert swept.packs_rewritten >= 1 and swept.packs_removed == swept.packs_rewritten
    assert not backend.exists(object_key(image))
    assert sum(keys(backend).values()) < before
    assert read_lease(backend, PRUNE_KEY) is None
    assert [k for k in backend.list("locks/") if k.startswith(PUSH_PREFIX)] == []
    with connect(vault, spec) as link:
        checked = verify_remote(link, read_data=True)
    assert checked.ok, checked.problems
    copy, _ = clone(spec, tmp_path / "copy")
    jobs = {e.job_id for e in copy.entries()}
    assert "job-3" not in jobs and len(jobs) == 24
    # The vault's push after a gc sends nothing new and finds the remote whole.
    again = push_to(vault, spec)
    assert again.ok and not again.notes


def test_gc_on_an_encrypting_remote_marks_in_the_remotes_ids(tmp_path: Path) -> None:
    spec = RemoteSpec("offsite", normalise_url(str(tmp_path / "remote")), encrypt=True)
    vault = forgotten_job_remote(tmp_path, spec, encrypt=False)
    with connect(vault, spec, passphrase=PASSPHRASE) as link:
        forget_remote(vault.refs.resolve, link, policy=KeepPolicy(last=1))
        swept = gc_remote(link, grace_seconds=0)
        assert swept.removed >= 2
        checked = verify_remote(link, read_data=True)
    assert checked.ok, checked.problems


def test_the_grace_period_keeps_young_objects_and_dry_run_changes_nothing(
    spec: RemoteSpec, tmp_path: Path
) -> None:
    vault = forgotten_job_remote(tmp_path, spec)
    backend = open_backend(spec)
    with connect(vault, spec) as link:
        dry = forget_remote(vault.refs.resolve, link, policy=KeepPolicy(last=1), dry_run=True)
        assert len(dry.forgotten) == 2 and len(link.remote.snapshot_ids()) == 3
        forget_remote(vault.refs.resolve, link, policy=KeepPolicy(last=1))
        held = keys(backend)
        planned = gc_remote(link, grace_seconds=0, dry_run=True)
        assert planned.removed >= 2 and planned.removed_bytes > 0
        assert planned.packs_rewritten >= 1
        assert keys(backend) == held
        young = gc_remote(link, grace_seconds=3600)
        assert young.removed == 0 and young.kept_young >= 2 and young.kept_young_bytes > 0
        assert keys(backend) == held
        # Unmarked objects remain: the lease says so to pushes until a gc leaves none.
        left = read_lease(backend, PRUNE_KEY)
        assert left is not None and left.interrupted
        assert not gc_remote(link, grace_seconds=0, dry_run=True).notes
        left = read_lease(backend, PRUNE_KEY)
        assert left is not None and left.interrupted  # a dry run clears nothing
        # A clock an hour ahead: the same objects are now old enough.
        later = gc_remote(link, grace_seconds=3600, now=time.time() + 7200)
        assert later.removed == planned.removed
    assert read_lease(backend, PRUNE_KEY) is None
    assert not backend.exists(object_key(job3_image(vault)))


def test_the_remotes_newest_snapshot_is_never_forgotten(tmp_path: Path) -> None:
    spec = RemoteSpec("offsite", normalise_url(str(tmp_path / "remote")))
    vault = forgotten_job_remote(tmp_path, spec)
    with connect(vault, spec) as link:
        report = forget_remote(vault.refs.resolve, link, policy=KeepPolicy(last=0, daily=0))
        kept = [d for d in report.decisions if d.keep]
        assert [d.reasons for d in kept] == [["the remote's newest"]]
        from mjvault.errors import UsageError

        with pytest.raises(UsageError, match="newest"):
            forget_remote(vault.refs.resolve, link, snapshot_ids=[kept[0].snapshot.id])


# -- the lease ------------------------------------------------------------------------------


def test_two_prunes_at_once_one_refuses(spec: RemoteSpec, tmp_path: Path) -> None:
    vault = forgotten_job_remote(tmp_path, spec)
    backend = open_backend(spec)
    held = take_prune_lease(backend)
    try:
        with connect(vault, spec) as link, pytest.raises(RemoteBusy, match="being pruned"):
            gc_remote(link, grace_seconds=0)
    finally:
        held.release()
    # Eight racing for it: exactly one wins.
    wins: list[object] = []
    losses: list[BaseException] = []
    gate = threading.Barrier(8)

    def race() -> None:
        own = open_backend(spec)
        gate.wait()
        try:
            wins.append(take_prune_lease(own))
        except RemoteBusy as exc:
            losses.append(exc)

    threads = [threading.Thread(target=race) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(wins) == 1 and len(losses) == 7
    wins[0].release()  # type: ignore[attr-defined]


def test_a_prune_refuses_beside_a_push_in_flight_and_a_push_waits_for_a_prune(
    spec: RemoteSpec, tmp_path: Path
) -> None:
    vault = forgotten_job_remote(tmp_path, spec)
    backend = open_backend(spec)
    pushing, _ = take_push_lease(backend)
    with connect(vault, spec) as link, pytest.raises(RemoteBusy, match="push in flight"):
        gc_remote(link, grace_seconds=0)
    pushing.release()
    assert read_lease(backend, PRUNE_KEY) is None  # the refused prune took its lease back
    pruning = take_prune_lease(backend)
    with pytest.raises(RemoteBusy, match="being pruned"):
        push_to(vault, spec)
    # The refused push took its lease back.
    assert [k for k in backend.list("locks/") if k.startswith(PUSH_PREFIX)] == []
    told: list[str] = []
    threading.Timer(1.0, pruning.release).start()
    report = push_to(vault, spec, prune_wait=30.0, on_wait=told.append)
    assert report.ok and len(told) == 1 and "being pruned" in told[0]


def test_an_expired_lease_is_broken_and_a_push_after_a_cut_short_prune_checks_everything(
    tmp_path: Path,
) -> None:
    spec = RemoteSpec("offsite", normalise_url(str(tmp_path / "remote")))
    vault = forgotten_job_remote(tmp_path, spec)
    backend = open_backend(spec)
    dead = {
        "host": "elsewhere",
        "pid": 1,
        "started": "2020-01-01T00:00:00+00:00",
        "expires": "2020-01-01T00:10:00+00:00",
        "id": "0123456789abcdef",
    }
    backend.put(PRUNE_KEY, json.dumps(dead).encode())
    report = push_to(vault, spec)
    assert report.ok and report.notes and "cut short" in report.notes[0]
    with connect(vault, spec) as link:
        gc_remote(link, grace_seconds=0)
    assert read_lease(backend, PRUNE_KEY) is None
    assert not push_to(vault, spec).notes


# -- faults ---------------------------------------------------------------------------------

# gc in a child process of its own, saying each key it deletes, so the test can kill it (or
# cut its remote off) part-way through the sweep.
SWEEPING_GC = """
import json, sys, time
from pathlib import Path
from mjvault import Vault
from mjvault.remotes import folder, obstore_backend
from mjvault.remotes.config import RemoteSpec
from mjvault.remotes.prune import gc_remote
from mjvault.remotes.session import connect

for cls in (folder.FolderBackend, obstore_backend.ObstoreBackend):
    def told(self, key, real=cls.delete):
        real(self, key)
        print(key, flush=True)
        time.sleep(0.05)
    cls.delete = told
def told_many(self, keys, real=obstore_backend.ObstoreBackend.delete_many):
    real(self, keys)
    for key in keys:
        print(key, flush=True)
        time.sleep(0.05)
obstore_backend.ObstoreBackend.delete_many = told_many
with Vault.open(Path(sys.argv[1])) as vault:
    with connect(vault, RemoteSpec(**json.loads(sys.argv[2]))) as link:
        gc_remote(link, grace_seconds=0)
print("done", flush=True)
"""


def half_forgotten(tmp_path: Path, spec: RemoteSpec, jobs: int) -> Vault:
    """A remote whose one remaining snapshot lacks every other job of the first push."""
    vault = Vault.init(tmp_path / "src")
    add_jobs(vault, jobs)
    assert push_to(vault, spec).ok
    forget_jobs(vault, [f"job-{n}" for n in range(0, jobs, 2)])
    add_jobs(vault, 3, start=jobs)
    assert push_to(vault, spec).ok
    with connect(vault, spec) as link:
        forget_remote(vault.refs.resolve, link, policy=KeepPolicy(last=1))
    return vault


def sweep_in_child(
    vault_dir: Path, spec: RemoteSpec, on_deleted: object
) -> subprocess.Popen[bytes]:
    """Run :data:`SWEEPING_GC`; ``on_deleted(count, child)`` after each key it deletes, until
    it returns True."""
    child = subprocess.Popen(
        [sys.executable, "-c", SWEEPING_GC, str(vault_dir), json.dumps(spec.to_json())],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=Path(__file__).resolve().parents[1],
    )
    assert child.stdout is not None
    for count, _ in enumerate(child.stdout, start=1):
        if on_deleted(count, child):  # type: ignore[operator]
            break
    child.wait(timeout=120)
    return child


def test_gc_on_a_remote_killed_mid_sweep_leaves_it_valid_and_a_rerun_finishes(
    spec: RemoteSpec, tmp_path: Path
) -> None:
    half_forgotten(tmp_path, spec, 60).close()

    def kill(count: int, child: subprocess.Popen[bytes]) -> bool:
        if count == 5:
            os.kill(child.pid, signal.SIGKILL)
            return True
        return False

    child = sweep_in_child(tmp_path / "src", spec, kill)
    assert child.returncode == -signal.SIGKILL
    backend = open_backend(spec)
    left = read_lease(backend, PRUNE_KEY)
    assert left is not None and not left.live()  # its process is gone: seen at once
    with Vault.open(tmp_path / "src") as vault, connect(vault, spec) as link:
        assert verify_remote(link, read_data=True).ok
        # A push now trusts no subtree, then a second gc finishes the job.
        pushed = push(vault, link)
        assert pushed.ok and pushed.notes
        rerun = gc_remote(link, grace_seconds=0)
        assert rerun.removed > 0
        assert verify_remote(link, read_data=True).ok
    assert read_lease(backend, PRUNE_KEY) is None


@pytest.mark.skipif(moto_executable() is None, reason="moto[server] not installed")
def test_a_remote_that_fails_mid_gc_is_left_valid(moto, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    spec = moto.spec("offsite")
    vault = half_forgotten(tmp_path, spec, 40)
    with connect(vault, spec) as link:
        planned = gc_remote(link, grace_seconds=0, dry_run=True)
    vault.close()
    with FaultProxy(moto.port) as proxy:
        flaky = RemoteSpec(**{**spec.to_json(), "endpoint_url": proxy.endpoint})  # type: ignore[arg-type]

        def cut_off(count: int, child: subprocess.Popen[bytes]) -> bool:
            if count == 5:
                proxy.dead_after = proxy.requests  # silent from now on
                return True
            return False

        child = sweep_in_child(tmp_path / "src", flaky, cut_off)
    assert child.returncode != 0
    assert child.stderr is not None and b"RemoteError" in child.stderr.read()
    backend = open_backend(spec)
    with Vault.open(tmp_path / "src") as vault, connect(vault, spec) as link:
        assert verify_remote(link, read_data=True).ok
        rerun = gc_remote(link, grace_seconds=0)
        assert 0 < rerun.removed < planned.removed
        assert verify_remote(link, read_data=True).ok
    assert read_lease(backend, PRUNE_KEY) is None


# -- the commands ---------------------------------------------------------------------------


def test_cli_forget_and_gc_remote(tmp_path: Path) -> None:
    spec = RemoteSpec("nas", normalise_url(str(tmp_path / "remote")))
    vault = forgotten_job_remote(tmp_path, spec)
    vault.close()
    where = ["--vault", str(tmp_path / "src")]
    dry = run_cli(*where, "--json", "forget", "--remote", "nas", "--keep-last", "1", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert len(json.loads(dry.stdout)["forgotten"]) == 2
    done = run_cli(*where, "--json", "forget", "--remote", "nas", "--keep-last", "1")
    assert done.returncode == 0, done.stderr
    planned = run_cli(*where, "--json", "gc", "--remote", "nas", "--grace", "0", "--dry-run")
    assert planned.returncode == 0, planned.stderr
    plan = json.loads(planned.stdout)
    assert plan["dry_run"] and plan["removed"] >= 2
    swept = run_cli(*where, "gc", "--remote", "nas", "--grace", "0")
    assert swept.returncode == 0, swept.stderr
    assert f"removed {plan['removed']} objects" in swept.stdout.decode()
    verified = run_cli(*where, "verify", "--remote", "nas", "--read-data")
    assert verified.returncode == 0, verified.stdout + verified.stderr


# -- memory ---------------------------------------------------------------------------------

# The new packs are made small, as the memory test of push makes push's: both sizes fill
# several, and what is left to differ is what grows with the remote.
GC_CHILD = """
import sys
from pathlib import Path
from mjvault import Vault
from mjvault.remotes import prune
from mjvault.remotes.config import RemoteSpec, normalise_url
from mjvault.remotes.session import connect

prune.PACK_TARGET_BYTES = 256 * 1024
with Vault.open(Path(sys.argv[1])) as vault:
    with connect(vault, RemoteSpec("r", normalise_url(sys.argv[2]))) as link:
        report = prune.gc_remote(link, grace_seconds=0, scratch_dir=Path(sys.argv[3]))
assert report.packs_written > 0, report
print(report.removed)
"""
# Measured: 29.6 MB at 1,000 jobs, 33.3 MB at 5,000 (+3.7: SQLite's and LMDB's page caches
# filling further). The marks in a Python set instead would add ~150 B for each of the
# ~24,000 more ids, ~3.6 MB on top.
GC_GROWTH_MB = 6


@pytest.mark.memory
def test_gc_on_a_remote_peak_memory_does_not_grow_with_the_remote(tmp_path: Path) -> None:
    from tests.test_remote_memory import LARGE_JOBS, PUSH, SMALL_JOBS, build, measure

    peaks = {}
    for jobs in (SMALL_JOBS, LARGE_JOBS):
        vault_dir = build(tmp_path / f"vault-{jobs}", jobs)
        remote = tmp_path / f"remote-{jobs}"
        measure(PUSH, [str(vault_dir), str(remote)], tmp_path / f"push-{jobs}")
        with Vault.open(vault_dir) as vault:
            doomed = [e.job_id for n, e in enumerate(vault.entries()) if n % 3 == 0]
            forget_jobs(vault, doomed)
        measure(PUSH, [str(vault_dir), str(remote)], tmp_path / f"push-again-{jobs}")
        spec = RemoteSpec("r", normalise_url(str(remote)))
        with Vault.open(vault_dir) as vault, connect(vault, spec) as link:
            assert len(forget_remote(None, link, policy=KeepPolicy(last=1)).forgotten) == 1
        scratch = tmp_path / f"scratch-{jobs}"
        peaks[jobs], removed = measure(
            GC_CHILD, [str(vault_dir), str(remote), str(scratch)], tmp_path / f"gc-{jobs}"
        )
        assert removed >= len(doomed) * 2  # each forgotten job's record and images
        assert list(scratch.iterdir()) == []
        with Vault.open(vault_dir) as vault, connect(vault, spec) as link:
            assert verify_remote(link).ok
    grown = peaks[LARGE_JOBS] - peaks[SMALL_JOBS]
    assert grown < GC_GROWTH_MB, (
        f"gc --remote: {peaks[SMALL_JOBS]:.1f} MB at {SMALL_JOBS} jobs, "
        f"{peaks[LARGE_JOBS]:.1f} MB at {LARGE_JOBS}: +{grown:.1f} MB"
    )


def test_a_snapshot_rewritten_by_forget_job_counts_as_newer_than_its_original(
    tmp_path: Path,
) -> None:
    """Both are on the remote with the same time: `--keep-last 1` keeps the one without
    the job, so the job's objects can go."""
    spec = RemoteSpec("offsite", normalise_url(str(tmp_path / "remote")))
    vault = Vault.init(tmp_path / "src")
    add_jobs(vault, 10)
    assert push_to(vault, spec).ok
    forget_jobs(vault, ["job-3"])
    assert push_to(vault, spec).ok
    head = vault.refs.head()
    with connect(vault, spec) as link:
        report = forget_remote(vault.refs.resolve, link, policy=KeepPolicy(last=1))
        assert link.remote.snapshot_ids() == {head}
        assert report.forgotten != [head]
        assert gc_remote(link, grace_seconds=0).removed >= 2
    assert not open_backend(spec).exists(object_key(job3_image(vault)))


def test_forget_job_reaches_every_remote_and_names_those_it_could_not(tmp_path: Path) -> None:
    nas = RemoteSpec("nas", normalise_url(str(tmp_path / "nas")))
    gone = RemoteSpec("gone", normalise_url(str(tmp_path / "gone")))
    vault = Vault.init(tmp_path / "src")
    add_jobs(vault, 10)
    for spec in (nas, gone):
        save_spec(vault.path, spec)
        assert push_to(vault, spec).ok
    image = job3_image(vault)
    vault.close()
    shutil.rmtree(tmp_path / "gone")  # the drive is not plugged in
    done = run_cli("--vault", str(tmp_path / "src"), "--json", "forget", "--job", "job-3")
    assert done.returncode == 4, done.stderr
    assert b"the job is still on: gone" in done.stderr
    remotes = {r["name"]: r for r in json.loads(done.stdout)["remotes"]}
    assert remotes["gone"]["error"] and not remotes["gone"]["pushed"]
    assert remotes["nas"]["pushed"] and len(remotes["nas"]["forgotten"]) == 1
    with Vault.open(tmp_path / "src") as vault, connect(vault, nas) as link:
        assert link.remote.snapshot_ids() == {vault.refs.head()}
        assert gc_remote(link, grace_seconds=0).removed >= 2
        assert verify_remote(link).ok
    assert not open_backend(nas).exists(object_key(image))


def test_cli_push_during_a_prune_refuses_with_one_line(tmp_path: Path) -> None:
    spec = RemoteSpec("nas", normalise_url(str(tmp_path / "remote")))
    vault = Vault.init(tmp_path / "src")
    save_spec(vault.path, spec)
    add_jobs(vault, 3)
    assert push_to(vault, spec).ok
    add_jobs(vault, 2, start=3)
    vault.close()
    pruning = take_prune_lease(open_backend(spec))
    try:
        refused = run_cli("--vault", str(tmp_path / "src"), "push", "nas")
    finally:
        pruning.release()
    assert refused.returncode == 1
    errors = [line for line in refused.stderr.decode().splitlines() if "error" in line]
    assert len(errors) == 1 and "is being pruned by" in errors[0], errors
    # Asked to, it waits for the prune to end, says why it waits, then pushes.
    pruning = take_prune_lease(open_backend(spec))
    threading.Timer(1.0, pruning.release).start()
    waited = run_cli("--vault", str(tmp_path / "src"), "push", "--wait", "1m", "nas")
    assert waited.returncode == 0, waited.stderr
    assert b"being pruned" in waited.stderr and b"sent" in waited.stdout
    bad = run_cli("--vault", str(tmp_path / "src"), "push", "--wait", "soon", "nas")
    assert bad.returncode == 2 and b"soon" in bad.stderr


def test_a_damaged_pack_is_kept_whole_and_the_lease_stays_marked(tmp_path: Path) -> None:
    from mjvault.remotes.packs import PACKS_PREFIX, read_remote_trailer

    spec = RemoteSpec("offsite", normalise_url(str(tmp_path / "remote")))
    vault = Vault.init(tmp_path / "src")
    add_jobs(vault, 10)
    record = next(e.record for e in vault.entries() if e.job_id == "job-3")
    assert push_to(vault, spec).ok
    forget_jobs(vault, ["job-3"])
    add_jobs(vault, 2, start=10)
    assert push_to(vault, spec).ok
    backend = open_backend(spec)
    for key in backend.list(PACKS_PREFIX):
        name = key[len(PACKS_PREFIX) :]
        found = [e for e in read_remote_trailer(backend, name).entries if e.hex_id == record]
        if found:
            path = tmp_path / "remote" / key
            data = bytearray(path.read_bytes())
            data[found[0].offset + found[0].length - 1] ^= 0xFF  # inside job-3's record
            path.chmod(0o600)
            path.write_bytes(bytes(data))
            damaged = key
    with connect(vault, spec) as link:
        forget_remote(vault.refs.resolve, link, policy=KeepPolicy(last=1))
        swept = gc_remote(link, grace_seconds=0)
    assert swept.packs_kept_damaged == 1 and "kept whole" in swept.notes[0]
    assert backend.exists(damaged)
    assert not backend.exists(object_key(job3_image(vault)))
    left = read_lease(backend, PRUNE_KEY)
    assert left is not None and left.interrupted
    assert push_to(vault, spec).notes  # trusts no subtree


def test_a_pack_copy_left_by_a_killed_gc_is_removed_by_the_next(tmp_path: Path) -> None:
    spec = RemoteSpec("offsite", normalise_url(str(tmp_path / "remote")))
    vault = forgotten_job_remote(tmp_path, spec)
    spool = tmp_path / "scratch"
    spool.mkdir()
    leftover = spool / f"gc-{'ab' * 32}.pack"
    leftover.write_bytes(b"a pack copy a killed gc was reading")
    with connect(vault, spec) as link:
        forget_remote(vault.refs.resolve, link, policy=KeepPolicy(last=1))
        gc_remote(link, grace_seconds=0, scratch_dir=spool)
    assert not leftover.exists()
    assert not list(spool.glob("gc-*.pack"))
