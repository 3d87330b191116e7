"""Remotes against real storage: folders, moto's S3 server and a one-node Ceph cluster's
gateway on 127.0.0.1 (no mocks)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from mjvault import Vault
from mjvault.remotes.backend import RemoteError
from mjvault.remotes.clone import clone
from mjvault.remotes.config import RemoteSpec, normalise_url, open_backend
from mjvault.remotes.pull import pull
from mjvault.remotes.push import push
from mjvault.remotes.remote import object_key
from mjvault.remotes.session import connect
from mjvault.remotes.verify import verify_remote
from mjvault.testing.ceph import CephCluster
from mjvault.testing.objectstore import FaultProxy, MotoServer, moto_executable
from tests.conftest import CHEAP_KDF, PASSPHRASE, S3_ENV, png_bytes, record_json, run_cli

pytestmark = pytest.mark.skipif(moto_executable() is None, reason="moto[server] not installed")


def s3_spec(
    server: MotoServer | CephCluster,
    name: str = "offsite",
    *,
    endpoint: str | None = None,
    **kw: object,
) -> RemoteSpec:
    return server.spec(name, endpoint_url=endpoint or server.endpoint, **kw)


def folder_spec(tmp_path: Path, name: str = "offsite", **kw: object) -> RemoteSpec:
    return RemoteSpec(name, normalise_url(str(tmp_path / "remote")), **kw)  # type: ignore[arg-type]


@pytest.fixture(params=["folder", "s3", "ceph"])
def spec(request: pytest.FixtureRequest, tmp_path: Path) -> RemoteSpec:
    if request.param == "folder":
        return folder_spec(tmp_path)
    return s3_spec(request.getfixturevalue("moto" if request.param == "s3" else "ceph_rgw"))


def add_jobs(vault: Vault, count: int, start: int = 0, size: int = 256) -> None:
    with vault.writer("test") as writer:
        for n in range(start, start + count):
            image = writer.put_media(png_bytes(n, size))
            writer.add_job(record_json(f"job-{n}", f"prompt {n} fox"), [image, None])


def push_to(vault: Vault, spec: RemoteSpec, **kw: object):  # type: ignore[no-untyped-def]
    with connect(vault, spec, passphrase=PASSPHRASE, create=True, kdf=CHEAP_KDF) as link:
        return push(vault, link, **kw)  # type: ignore[arg-type]


def state(vault: Vault) -> dict[str, tuple[bytes, list[bytes]]]:
    return {
        e.job_id: (vault.record_json(e), [vault.read_object(i) for i in e.images if i])
        for e in vault.entries()
    }


# -- round trips ----------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["plain", "encrypted-vault", "encrypting-remote"])
def test_push_then_clone_gives_the_same_vault(kind: str, spec: RemoteSpec, tmp_path: Path) -> None:
    if kind == "encrypted-vault":
        source = Vault.init(tmp_path / "src", encrypt=True, passphrase=PASSPHRASE, kdf=CHEAP_KDF)
    else:
        source = Vault.init(tmp_path / "src")
    if kind == "encrypting-remote":
        spec = RemoteSpec(**{**spec.to_json(), "encrypt": True})  # type: ignore[arg-type]
    add_jobs(source, 130)  # more than one leaf holds: an inner node and its children
    add_jobs(source, 10, start=130)
    report = push_to(source, spec)
    assert report.ok and report.snapshots_sent == 2
    assert report.objects_sent > 140 * 2

    again = push_to(source, spec)
    assert again.objects_sent == 0 and again.snapshots_present == 2

    copy, pulled = clone(spec, tmp_path / "copy", passphrase=PASSPHRASE)
    with copy:
        assert pulled.ok and pulled.snapshots_received == 2
        assert copy.encrypted == (kind == "encrypted-vault")
        head, original = copy.head(), source.head()
        assert head is not None and original is not None
        assert head.tree == original.tree and head.id == original.id
        assert state(copy) == state(source)
        assert len(copy.current_index().search(words=["fox"])) == 140
    if kind == "encrypting-remote":
        backend = open_backend(spec)
        names = {k.rpartition("/")[2] for k in backend.list("objects/")}
        plain_ids = set(source.store.iter_ids())
        assert not names & plain_ids  # the remote names nothing by its plain id
        image = source.read_object(next(source.entries()).images[0])  # type: ignore[arg-type]
        assert all(image[:64] not in backend.get(k) for k in backend.list("objects/"))
    source.close()


def test_pull_brings_new_snapshots_and_fast_forwards(spec: RemoteSpec, tmp_path: Path) -> None:
    source = Vault.init(tmp_path / "src")
    add_jobs(source, 30)
    push_to(source, spec)
    copy, _ = clone(spec, tmp_path / "copy")
    add_jobs(source, 5, start=30)
    push_to(source, spec)
    with connect(copy, RemoteSpec(**{**spec.to_json(), "name": "origin"})) as link:  # type: ignore[arg-type]
        report = pull(copy, link)
    assert report.head_moved and report.snapshots_received == 1
    assert report.objects_received == 5 * 2 + 1 + 1  # 5 images, 5 records, a leaf, manifest
    assert copy.head().tree == source.head().tree  # type: ignore[union-attr]
    assert len(copy.current_index().search(words=["fox"])) == 35
    copy.close()
    source.close()


def test_two_vaults_pushing_at_once_keep_both_snapshots(spec: RemoteSpec, tmp_path: Path) -> None:
    vaults = [Vault.init(tmp_path / f"v{i}") for i in range(2)]
    for i, v in enumerate(vaults):
        add_jobs(v, 40, start=i * 20)  # overlapping jobs: shared objects race too
    reports: list[object] = []
    barrier = threading.Barrier(2)

    def run(v: Vault) -> None:
        barrier.wait()
        reports.append(push_to(v, spec))

    threads = [threading.Thread(target=run, args=(v,)) for v in vaults]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(r.ok for r in reports)  # type: ignore[attr-defined]
    copy, _ = clone(spec, tmp_path / "copy")
    ids = {s.id for s in copy.snapshots()}
    assert {v.head().id for v in vaults} <= ids  # type: ignore[union-attr]
    assert copy.head().id == max((v.head() for v in vaults), key=lambda s: s.time).id  # type: ignore[union-attr, arg-type]
    copy.close()
    for v in vaults:
        v.close()


# -- verify --remote ------------------------------------------------------------------------
def test_verify_remote_finds_deleted_and_corrupted_objects(
    spec: RemoteSpec, tmp_path: Path
) -> None:
    source = Vault.init(tmp_path / "src")
    add_jobs(source, 20)
    push_to(source, spec)
    with connect(source, spec) as link:
        assert verify_remote(link, read_data=True).ok
        images = [e.images[0] for e in source.entries()]
        deleted, corrupted = images[0], images[1]
        backend = link.backend
        backend.delete(object_key(deleted))  # type: ignore[arg-type]
        data = bytearray(backend.get(object_key(corrupted)))  # type: ignore[arg-type]
        data[-1] ^= 0xFF
        backend.put(object_key(corrupted), bytes(data))  # type: ignore[arg-type]
        structural = verify_remote(link)
        assert [(p.kind, p.object_id) for p in structural.problems] == [("missing", deleted)]
        full = verify_remote(link, read_data=True)
        assert {(p.kind, p.object_id) for p in full.problems} == {
            ("missing", deleted),
            ("corrupt", corrupted),
        }
        # An ordinary push trusts published snapshots; --full walks them and sends what is
        # missing. A corrupted object is listed, so it is not overwritten blindly.
        assert push(source, link).objects_sent == 0
        assert push(source, link, full=True).objects_sent == 1
        assert {p.object_id for p in verify_remote(link, read_data=True).problems} == {corrupted}
    source.close()


def test_cli_remote_push_verify_clone(tmp_path: Path) -> None:
    vault_dir = tmp_path / "vault"
    source = Vault.init(vault_dir)
    add_jobs(source, 12)
    head = source.head()
    source.close()
    remote_dir = tmp_path / "drive" / "mj"
    v = ("--vault", str(vault_dir))
    added = run_cli(*v, "remote", "add", "drive", str(remote_dir))
    assert added.returncode == 0, added.stderr
    listed = run_cli(*v, "--json", "remote", "list")
    assert b'"name": "drive"' in listed.stdout
    pushed = run_cli(*v, "--json", "push", "drive")
    assert pushed.returncode == 0, pushed.stderr
    assert b'"snapshots_sent": 1' in pushed.stdout
    checked = run_cli(*v, "verify", "--remote", "drive", "--read-data")
    assert checked.returncode == 0 and b"no problems found" in checked.stdout
    next(remote_dir.glob("objects/*/*")).unlink()
    damaged = run_cli(*v, "verify", "--remote", "drive")
    assert damaged.returncode == 3 and b"missing" in damaged.stderr
    assert run_cli(*v, "push", "--full", "drive").returncode == 0
    cloned = run_cli("--json", "clone", str(remote_dir), str(tmp_path / "copy"))
    assert cloned.returncode == 0, cloned.stderr
    with Vault.open(tmp_path / "copy") as copy:
        assert copy.head() == head
    assert run_cli("--vault", str(tmp_path / "copy"), "verify").returncode == 0
    next(vault_dir.glob("objects/*/*")).unlink()
    assert run_cli(*v, "verify").returncode == 3
    repaired = run_cli(*v, "--json", "pull", "--repair", "drive")
    assert repaired.returncode == 0 and len(json.loads(repaired.stdout)["repaired"]) == 1
    assert run_cli(*v, "verify", "--read-data").returncode == 0
    removed = run_cli(*v, "remote", "remove", "drive")
    assert removed.returncode == 0 and remote_dir.joinpath("config").exists()
    unknown = run_cli(*v, "push", "drive")
    assert unknown.returncode == 2 and unknown.stderr.count(b"\n") == 1


# -- faults ---------------------------------------------------------------------------------
def test_wrong_credentials_give_one_clear_line(tmp_path: Path) -> None:
    # Authentication on: the first request (creating the bucket) is free, the rest are checked.
    with MotoServer(env={"INITIAL_NO_AUTH_ACTION_COUNT": "1"}) as strict:
        strict.create_bucket("guarded")
        vault_dir = tmp_path / "vault"
        Vault.init(vault_dir).close()
        env = S3_ENV | {
            "AWS_ACCESS_KEY_ID": "AKIAWRONGWRONGWRONG0",
            "AWS_SECRET_ACCESS_KEY": "nope",
        }
        result = run_cli(
            "--vault", str(vault_dir), "remote", "add", "cloud", "s3://guarded/mj",
            "--endpoint-url", strict.endpoint, env=env,
        )  # fmt: skip
    assert result.returncode == 1
    lines = result.stderr.decode().strip().splitlines()
    assert len(lines) == 1 and "refused the credentials" in lines[0]
    assert "nope" not in lines[0]


def test_a_ceph_gateways_refusals_are_one_clear_line(ceph_rgw: CephCluster, tmp_path: Path) -> None:
    """Ceph answers a bad signature, an unknown key and a missing bucket in its own way: the
    status, the URL, the timing and a cut-off XML body in one long error. The user gets the
    refusal's status and code, and a missing bucket is named as such even for a listing."""
    vault_dir = tmp_path / "vault"
    Vault.init(vault_dir).close()
    bucket = ceph_rgw.spec().url.removeprefix("s3://").partition("/")[0]
    add = ("--vault", str(vault_dir), "remote", "add", "cloud")
    where = ("--endpoint-url", ceph_rgw.endpoint)
    for env, code in (
        ({"AWS_SECRET_ACCESS_KEY": "hunter2"}, "SignatureDoesNotMatch"),
        ({"AWS_ACCESS_KEY_ID": "AKIAWRONGWRONGWRONG0"}, "InvalidAccessKeyId"),
    ):
        result = run_cli(*add, f"s3://{bucket}/mj", *where, env=S3_ENV | env)
        assert result.returncode == 1
        (line,) = result.stderr.decode().strip().splitlines()
        assert "refused the credentials (HTTP 403 Forbidden: " + code + ")" in line, line
        assert "hunter2" not in line and "<" not in line and len(line) < 200
    missing = run_cli(*add, "s3://no-such-bucket/mj", *where, env=S3_ENV)
    assert missing.returncode == 1
    assert missing.stderr.decode().strip().splitlines() == [
        "mjvault: error: s3://no-such-bucket/mj: the bucket no-such-bucket does not exist"
    ]
    backend = open_backend(
        RemoteSpec("x", "s3://no-such-bucket/mj", endpoint_url=ceph_rgw.endpoint)
    )
    with pytest.raises(
        RemoteError, match="^s3://no-such-bucket/mj: the bucket no-such-bucket does not exist$"
    ):
        list(backend.list("objects/"))


def test_create_only_puts_racing_on_one_key_have_one_winner(spec: RemoteSpec) -> None:
    """Snapshots and remote configs are published with create-only writes; on every engine
    exactly one of several writers racing for a key wins, and its bytes are what stays."""
    backend = open_backend(spec)
    barrier = threading.Barrier(8)
    won: dict[int, bool] = {}

    def race(n: int) -> None:
        barrier.wait()
        won[n] = backend.put("snapshots/raced", f"writer {n}".encode(), create_only=True)

    threads = [threading.Thread(target=race, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = [n for n, ok in won.items() if ok]
    assert len(won) == 8 and len(winners) == 1
    assert backend.get("snapshots/raced") == f"writer {winners[0]}".encode()
    backend.close()


def test_wrong_passphrase_for_an_encrypted_remote(moto: MotoServer, tmp_path: Path) -> None:
    spec = s3_spec(moto, encrypt=True)
    source = Vault.init(tmp_path / "src")
    add_jobs(source, 3)
    push_to(source, spec)
    from mjvault.errors import WrongPassphrase

    with pytest.raises(WrongPassphrase):
        clone(spec, tmp_path / "copy", passphrase="not it")
    assert not (tmp_path / "copy").exists()
    source.close()


def test_503s_and_slow_responses_are_retried(moto: MotoServer, tmp_path: Path) -> None:
    with FaultProxy(moto.port) as proxy:
        proxy.fail_every = 4
        proxy.delay = 0.005
        spec = s3_spec(moto, endpoint=proxy.endpoint)
        source = Vault.init(tmp_path / "src")
        add_jobs(source, 25)
        report = push_to(source, spec)
        assert report.ok and proxy.failures > 5
        copy, pulled = clone(spec, tmp_path / "copy")
        assert pulled.ok and copy.head() == source.head()
    copy.close()
    source.close()


def test_server_gone_mid_push_then_back_resumes(
    s3_server: MotoServer | CephCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MJVAULT_REMOTE_RETRY_SECONDS", "1")
    with FaultProxy(s3_server.port) as proxy:
        spec = s3_spec(s3_server, endpoint=proxy.endpoint)
        direct = open_backend(RemoteSpec(**{**spec.to_json(), "endpoint_url": s3_server.endpoint}))  # type: ignore[arg-type]
        source = Vault.init(tmp_path / "src")
        add_jobs(source, 40)
        # The server answers 25 requests, then goes silent for good: a push of ~80 objects dies
        # a quarter of the way through.
        proxy.dead_after = 25
        with pytest.raises(RemoteError):
            push_to(source, spec)
        arrived = sum(1 for _ in direct.list("objects/"))
        assert 5 <= arrived < 40 * 2 and not list(direct.list("snapshots/"))
        proxy.dead_after = None
        report = push_to(source, spec)
        assert report.ok and report.snapshots_sent == 1
        assert report.objects_skipped >= arrived - 1 and report.objects_sent < 40 * 2
        with connect(source, spec) as link:
            assert verify_remote(link, read_data=True).ok
    source.close()


def test_kill_9_during_push_then_resume(
    s3_server: MotoServer | CephCluster, tmp_path: Path
) -> None:
    with FaultProxy(s3_server.port) as proxy:
        proxy.delay = 0.03
        spec = s3_spec(s3_server, endpoint=proxy.endpoint)
        direct = open_backend(RemoteSpec(**{**spec.to_json(), "endpoint_url": s3_server.endpoint}))  # type: ignore[arg-type]
        vault_dir = tmp_path / "vault"
        source = Vault.init(vault_dir)
        add_jobs(source, 80)
        source.close()
        v = ("--vault", str(vault_dir))
        env = S3_ENV
        added = run_cli(
            *v, "remote", "add", "cloud", spec.url, "--endpoint-url", proxy.endpoint, env=env
        )
        assert added.returncode == 0, added.stderr
        full_env = {k: val for k, val in os.environ.items() if not k.startswith("MJVAULT_")} | env
        child = subprocess.Popen(
            [sys.executable, "-m", "mjvault", *v, "push", "cloud"],
            env=full_env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while sum(1 for _ in direct.list("objects/")) < 30 and time.monotonic() < deadline:
            time.sleep(0.05)
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
        arrived = sum(1 for _ in direct.list("objects/"))
        assert arrived < 160 and not list(direct.list("snapshots/"))
        proxy.delay = 0
        resumed = run_cli(*v, "--json", "push", "cloud", env=env)
        assert resumed.returncode == 0, resumed.stderr
        summary = json.loads(resumed.stdout)
        assert summary["snapshots_sent"] == 1 and summary["objects_skipped"] >= arrived - 8
        assert summary["objects_sent"] < 80 * 2 + 2 - arrived + 8
        assert run_cli(*v, "verify", "--remote", "cloud", "--read-data", env=env).returncode == 0


def test_cli_encrypting_remote_round_trip(tmp_path: Path) -> None:
    vault_dir = tmp_path / "vault"
    source = Vault.init(vault_dir)
    add_jobs(source, 6)
    head = source.head()
    source.close()
    secret_file = tmp_path / "pass"
    secret_file.write_text("a long remote passphrase\n")
    v = ("--vault", str(vault_dir), "--passphrase-file", str(secret_file))
    remote_dir = tmp_path / "remote"
    assert run_cli(*v, "remote", "add", "--encrypt", "sealed", str(remote_dir)).returncode == 0
    pushed = run_cli(*v, "push", "sealed")
    assert pushed.returncode == 0, pushed.stderr
    assert b"a long remote passphrase" not in pushed.stdout + pushed.stderr
    copy_dir = tmp_path / "copy"
    args = ("clone", str(remote_dir), str(copy_dir), "--passphrase-file", str(secret_file))
    cloned = run_cli(*args)
    assert cloned.returncode == 0, cloned.stderr
    with Vault.open(copy_dir) as copy:
        assert not copy.encrypted and copy.head() == head
    again = run_cli("--json", *args)  # the same clone again finishes (here: nothing to do)
    assert again.returncode == 0 and json.loads(again.stdout)["objects_received"] == 0
    wrong = run_cli("clone", str(remote_dir), str(tmp_path / "x"), env={"MJVAULT_PASSPHRASE": "no"})
    assert wrong.returncode == 12 and wrong.stderr.count(b"\n") == 1


def test_a_remote_refuses_a_vault_it_does_not_suit(tmp_path: Path) -> None:
    from mjvault.remotes.remote import RemoteMismatch

    plain = Vault.init(tmp_path / "plain")
    sealed = Vault.init(tmp_path / "sealed", encrypt=True, passphrase=PASSPHRASE, kdf=CHEAP_KDF)
    other = Vault.init(tmp_path / "other", encrypt=True, passphrase=PASSPHRASE, kdf=CHEAP_KDF)
    add_jobs(plain, 2)
    add_jobs(sealed, 2)
    plain_remote = RemoteSpec("p", normalise_url(str(tmp_path / "r1")))
    sealed_remote = RemoteSpec("s", normalise_url(str(tmp_path / "r2")))
    push_to(plain, plain_remote)
    push_to(sealed, sealed_remote)
    with pytest.raises(RemoteMismatch, match="encrypted"):
        connect(plain, sealed_remote)
    with pytest.raises(RemoteMismatch, match="another vault"):
        connect(other, sealed_remote)
    with pytest.raises(RemoteMismatch):
        connect(sealed, plain_remote)
    with pytest.raises(RemoteMismatch, match="already sealed"):
        connect(sealed, RemoteSpec("e", plain_remote.url, encrypt=True))
    for v in (plain, sealed, other):
        v.close()


def test_push_sweeps_a_dead_writers_temp_files_from_a_folder_remote(tmp_path: Path) -> None:
    source = Vault.init(tmp_path / "src")
    add_jobs(source, 2)
    spec = folder_spec(tmp_path)
    push_to(source, spec)
    tmp_dir = tmp_path / "remote" / "tmp"
    old, fresh = tmp_dir / "old.tmp", tmp_dir / "fresh.tmp"
    old.write_bytes(b"partial")
    fresh.write_bytes(b"being written")
    os.utime(old, (time.time() - 2 * 86400,) * 2)
    push_to(source, spec)
    assert not old.exists() and fresh.exists()
    source.close()


def test_pull_of_another_vaults_history_keeps_head_and_says_so(tmp_path: Path) -> None:
    mine, theirs = Vault.init(tmp_path / "mine"), Vault.init(tmp_path / "theirs")
    add_jobs(mine, 3)
    add_jobs(theirs, 3, start=100)
    spec = folder_spec(tmp_path)
    push_to(theirs, spec)  # newer than mine, and not descended from it
    head = mine.head()
    with connect(mine, spec) as link:
        report = pull(mine, link)
    assert report.diverged and not report.head_moved and mine.head() == head
    assert {s.id for s in mine.snapshots()} == {head.id, theirs.head().id}  # type: ignore[union-attr]
    mine.close()
    theirs.close()


def test_the_moto_fixture_has_one_owner() -> None:
    """Every test module reaches S3 through conftest's fixture: one place decides how the
    local server is started and what the S3 client is told."""
    defines = re.compile(r"^def moto\(", re.MULTILINE)
    tests = Path(__file__).parent
    owners = [p.name for p in sorted(tests.rglob("*.py")) if defines.search(p.read_text("utf-8"))]
    assert owners == ["conftest.py"]
