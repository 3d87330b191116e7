"""Remotes against real storage: folders, and moto's S3 server on 127.0.0.1 (no mocks)."""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from mjvault import Vault
from mjvault.remotes.clone import clone
from mjvault.remotes.config import RemoteSpec, normalise_url, open_backend
from mjvault.remotes.pull import pull
from mjvault.remotes.push import push
from mjvault.remotes.session import connect
from mjvault.testing.objectstore import MotoServer, moto_executable
from tests.conftest import CHEAP_KDF, PASSPHRASE, png_bytes, record_json

pytestmark = pytest.mark.skipif(moto_executable() is None, reason="moto[server] not installed")

S3_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_REGION": "us-east-1",
    "MJVAULT_REMOTE_RETRY_SECONDS": "8",
}


@pytest.fixture(scope="module")
def moto() -> Iterator[MotoServer]:
    saved = {k: os.environ.get(k) for k in S3_ENV}
    os.environ.update(S3_ENV)
    with MotoServer() as server:
        yield server
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def s3_spec(
    moto: MotoServer, name: str = "offsite", *, endpoint: str | None = None, **kw: object
) -> RemoteSpec:
    bucket = f"b-{uuid.uuid4().hex[:12]}"
    moto.create_bucket(bucket)
    return RemoteSpec(name, f"s3://{bucket}/mj", endpoint_url=endpoint or moto.endpoint, **kw)  # type: ignore[arg-type]


def folder_spec(tmp_path: Path, name: str = "offsite", **kw: object) -> RemoteSpec:
    return RemoteSpec(name, normalise_url(str(tmp_path / "remote")), **kw)  # type: ignore[arg-type]


@pytest.fixture(params=["folder", "s3"])
def spec(request: pytest.FixtureRequest, tmp_path: Path) -> RemoteSpec:
    if request.param == "folder":
        return folder_spec(tmp_path)
    return s3_spec(request.getfixturevalue("moto"))


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
        assert len(copy.index.search(words=["fox"])) == 140
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
    assert len(copy.index.search(words=["fox"])) == 35
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
