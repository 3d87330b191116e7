"""Remotes hold small objects in packs: push and pull move a vault's metadata in few requests.

Against real storage only: folder remotes, and moto's S3 server or a Ceph gateway on 127.0.0.1
behind the counting proxy (``FaultProxy``), so request counts are what an S3 provider would bill.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from mjvault import Vault
from mjvault.errors import UnsupportedFormat
from mjvault.remotes import push as push_module
from mjvault.remotes.backend import RemoteError
from mjvault.remotes.clone import clone
from mjvault.remotes.config import RemoteSpec, open_backend, state_dir
from mjvault.remotes.pull import pull
from mjvault.remotes.push import push
from mjvault.remotes.remote import object_key, read_info
from mjvault.remotes.session import connect
from mjvault.remotes.verify import verify_remote
from mjvault.store.packfile import parse_trailer
from mjvault.testing.ceph import CephCluster
from mjvault.testing.objectstore import FaultProxy, MotoServer, moto_executable
from tests.conftest import CHEAP_KDF, PASSPHRASE, png_bytes, record_json
from tests.test_remotes import folder_spec, s3_spec, state

pytestmark = pytest.mark.skipif(moto_executable() is None, reason="moto[server] not installed")


def add_records(vault: Vault, count: int, start: int = 0, *, shared_image: bool = True) -> None:
    """Jobs that share one image (or have their own): what is left to send is metadata."""
    with vault.writer("test") as writer:
        for n in range(start, start + count):
            image = writer.put_media(png_bytes(0 if shared_image else n, 256))
            writer.add_job(record_json(f"job-{n}", f"prompt {n} fox and hound"), [image, None])


def push_to(vault: Vault, spec: RemoteSpec, **kw: object):  # type: ignore[no-untyped-def]
    with connect(vault, spec, passphrase=PASSPHRASE, create=True, kdf=CHEAP_KDF) as link:
        return push(vault, link, **kw)  # type: ignore[arg-type]


def remote_keys(spec: RemoteSpec, prefix: str) -> list[str]:
    backend = open_backend(spec)
    try:
        return list(backend.list(prefix))
    finally:
        backend.close()


def ids_in_pack(data: bytes) -> list[str]:
    trailer = parse_trailer(lambda n, offset: data[offset : offset + n], len(data))
    return [e.hex_id for e in trailer.entries]


def remote_pack_ids(spec: RemoteSpec) -> list[str]:
    """Every object id in every remote pack (a folder remote), repeats kept."""
    root = Path(spec.url.removeprefix("file://"))
    return [
        i for pack in sorted((root / "packs").iterdir()) for i in ids_in_pack(pack.read_bytes())
    ]


def test_push_of_many_records_sends_few_requests(
    s3_server: MotoServer | CephCluster, tmp_path: Path
) -> None:
    source = Vault.init(tmp_path / "src")
    add_records(source, 1500)  # enough for the vault to train its dictionary
    assert source.store.packs.names()
    with FaultProxy(s3_server.port) as proxy:
        spec = s3_spec(s3_server, endpoint=proxy.endpoint)
        with connect(source, spec, create=True) as link:
            proxy.requests = 0
            report = push(source, link)
            requests = proxy.requests
    spec = RemoteSpec(**{**spec.to_json(), "endpoint_url": s3_server.endpoint})  # type: ignore[arg-type]
    assert report.ok and report.snapshots_sent == 1
    assert report.objects_sent > 1500 and report.packs_sent >= 1
    # A few listings, one image, the pack(s), a manifest and a marker: not one per record.
    assert requests < 30, requests
    records = {e.record for e in source.entries()}
    assert not {k.rpartition("/")[2] for k in remote_keys(spec, "objects/")} & records
    copy, pulled = clone(spec, tmp_path / "copy")
    with copy:
        assert pulled.ok and copy.head() == source.head()
        assert state(copy) == state(source)
        assert copy.store.packs.names()  # the records landed in packs, not one file each
        assert not any(copy.store.is_loose(r) for r in records)
    source.close()


@pytest.mark.parametrize("kind", ["plain", "encrypted-vault", "encrypting-remote"])
def test_round_trip_through_a_packed_remote(kind: str, tmp_path: Path) -> None:
    if kind == "encrypted-vault":
        source = Vault.init(tmp_path / "src", encrypt=True, passphrase=PASSPHRASE, kdf=CHEAP_KDF)
    else:
        source = Vault.init(tmp_path / "src")
    spec = folder_spec(tmp_path, encrypt=kind == "encrypting-remote")
    add_records(source, 600, shared_image=False)
    add_records(source, 10, start=600, shared_image=False)
    report = push_to(source, spec)
    assert report.ok and report.snapshots_sent == 2 and report.packs_sent >= 1
    # Loose on the remote: the 610 images and the 2 manifests; records and nodes are packed.
    assert len(remote_keys(spec, "objects/")) == 610 + 2
    packed = remote_pack_ids(spec)
    assert len(packed) == len(set(packed)) > 610
    root = Path(spec.url.removeprefix("file://"))
    assert json.loads((root / "config").read_text())["version"] == 3
    assert push_to(source, spec).objects_sent == 0

    copy, pulled = clone(spec, tmp_path / "copy", passphrase=PASSPHRASE)
    assert pulled.ok and copy.head() == source.head()
    assert state(copy) == state(source)
    assert copy.encrypted == (kind == "encrypted-vault")
    assert not any(copy.store.is_loose(e.record) for e in copy.entries())

    add_records(source, 5, start=610, shared_image=False)
    old_packs = set((root / "packs").iterdir())
    pushed = push_to(source, spec)
    assert pushed.ok and pushed.packs_sent == 1
    (new_pack,) = set((root / "packs").iterdir()) - old_packs
    spec_origin = RemoteSpec(**{**spec.to_json(), "name": "origin"})  # type: ignore[arg-type]
    with connect(copy, spec_origin, passphrase=PASSPHRASE) as link:
        again = pull(copy, link)
        assert link.remote.packs is not None
        # Only the new pack was wanted, whole: 5 records and the changed nodes.
        assert link.remote.packs.bytes_downloaded == new_pack.stat().st_size
        assert verify_remote(link, read_data=True).ok
    assert again.ok and 5 * 2 + 1 + 1 <= again.objects_received <= 5 * 2 + 1 + 6
    assert copy.head() == source.head() and state(copy) == state(source)
    copy.close()
    source.close()


def test_a_killed_push_resumes_and_sends_no_pack_twice(
    moto: MotoServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MJVAULT_REMOTE_RETRY_SECONDS", "1")
    monkeypatch.setattr(push_module, "PACK_TARGET_BYTES", 8 * 1024)  # many small packs
    source = Vault.init(tmp_path / "src")
    add_records(source, 400)
    with FaultProxy(moto.port) as proxy:
        spec = s3_spec(moto, endpoint=proxy.endpoint)
        with connect(source, spec, create=True):
            pass
        proxy.requests = 0
        proxy.dead_after = 10  # the listings, the image, then some of the packs
        with pytest.raises(RemoteError):
            push_to(source, spec)
        proxy.dead_after = None
        direct = RemoteSpec(**{**spec.to_json(), "endpoint_url": moto.endpoint})  # type: ignore[arg-type]
        arrived = remote_keys(direct, "packs/")
        assert arrived and not remote_keys(direct, "snapshots/")
        # The local list of what each remote pack holds is a cache: rebuilt from the packs'
        # trailers (ranged reads) when it is gone.
        for cache in state_dir(source.path, spec.name).glob("packs-*"):
            shutil.rmtree(cache)
        report = push_to(source, spec)
        assert report.ok and report.snapshots_sent == 1
        assert report.objects_skipped >= len(arrived)
    backend = open_backend(direct)
    try:
        ids = [i for key in backend.list("packs/") for i in ids_in_pack(backend.get(key))]
    finally:
        backend.close()
    assert len(ids) == len(set(ids))  # nothing uploaded twice
    with connect(source, direct) as link:
        assert verify_remote(link, read_data=True).ok
    source.close()


def test_an_interrupted_clone_of_a_packed_remote_finishes(
    moto: MotoServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MJVAULT_REMOTE_RETRY_SECONDS", "1")
    monkeypatch.setattr(push_module, "PACK_TARGET_BYTES", 8 * 1024)
    source = Vault.init(tmp_path / "src")
    add_records(source, 300, shared_image=False)
    with FaultProxy(moto.port) as proxy:
        spec = s3_spec(moto, endpoint=proxy.endpoint)
        assert push_to(source, spec).ok
        proxy.requests = 0
        proxy.dead_after = 40
        with pytest.raises(RemoteError):
            clone(spec, tmp_path / "copy", threads=2)
        proxy.dead_after = None
        copy, report = clone(spec, tmp_path / "copy")
    with copy:
        assert report.ok and copy.head() == source.head() and state(copy) == state(source)
    source.close()


def _make_version_1(spec: RemoteSpec) -> None:
    """What mjvault before packs left: every object loose, config version 1."""
    root = Path(spec.url.removeprefix("file://"))
    from mjvault.store.packfile import iter_entry_bytes, read_trailer

    for pack in list((root / "packs").iterdir()):
        fd = os.open(pack, os.O_RDONLY)
        try:
            trailer = read_trailer(fd, os.fstat(fd).st_size)
            for entry, data in iter_entry_bytes(fd, trailer):
                target = root / object_key(entry.hex_id)
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(data)
        finally:
            os.close(fd)
        pack.unlink()
    (root / "packs").rmdir()
    config = json.loads((root / "config").read_text())
    (root / "config").write_text(json.dumps(config | {"version": 1}))


def test_a_version_1_remote_is_read_and_upgraded_by_the_next_push(tmp_path: Path) -> None:
    source = Vault.init(tmp_path / "src")
    add_records(source, 20)
    spec = folder_spec(tmp_path)
    push_to(source, spec)
    _make_version_1(spec)
    root = Path(spec.url.removeprefix("file://"))
    before = json.loads((root / "config").read_text())
    copy, pulled = clone(spec, tmp_path / "copy")
    with copy:
        assert pulled.ok and copy.head() == source.head()
    add_records(source, 5, start=20)
    report = push_to(source, spec)
    assert report.ok and report.packs_sent == 1
    after = json.loads((root / "config").read_text())
    assert after == before | {"version": 3}  # that one field, nothing else
    copy, pulled = clone(spec, tmp_path / "copy2")
    with copy:
        assert pulled.ok and copy.head() == source.head()
    (root / "config").write_text(json.dumps(after | {"version": 4}))
    backend = open_backend(spec)
    with pytest.raises(UnsupportedFormat, match="version 4"):
        read_info(backend)
    source.close()


def test_a_version_2_remote_is_read_and_marked_3_by_the_next_push(tmp_path: Path) -> None:
    """A remote whose packs an older mjvault wrote (config version 2): read as it is; the
    next push, whose leaves are version 2, marks it 3 first."""
    source = Vault.init(tmp_path / "src")
    add_records(source, 20)
    spec = folder_spec(tmp_path)
    push_to(source, spec)
    root = Path(spec.url.removeprefix("file://"))
    before = json.loads((root / "config").read_text()) | {"version": 2}
    (root / "config").write_text(json.dumps(before))
    copy, pulled = clone(spec, tmp_path / "copy")
    with copy:
        assert pulled.ok and copy.head() == source.head()
    assert json.loads((root / "config").read_text()) == before
    add_records(source, 5, start=20)
    assert push_to(source, spec).ok
    assert json.loads((root / "config").read_text()) == before | {"version": 3}
    source.close()


@pytest.mark.parametrize("where", ["folder", "s3", "ceph"])
def test_the_end_of_a_remote_file_is_read_with_a_range(
    where: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    if where == "folder":
        spec = folder_spec(tmp_path)
    else:
        spec = s3_spec(request.getfixturevalue("moto" if where == "s3" else "ceph_rgw"))
    backend = open_backend(spec)
    try:
        data = bytes(range(256)) * 40
        backend.put("packs/x", data)
        assert backend.get_tail("packs/x", 100) == (data[-100:], len(data))
        assert backend.get_tail("packs/x", 1 << 20) == (data, len(data))
        assert backend.get_range("packs/x", 5, 17) == data[5:17]
    finally:
        backend.close()


def test_threads_that_want_one_pack_download_it_once(tmp_path: Path) -> None:
    """A pull's threads all want a pack the first time: the one that downloads it must publish
    it before the others may look. A thread let in between downloaded it again into the same
    spool file, truncating it under the readers (objects read back as absent)."""
    import threading
    import time
    from concurrent.futures import ThreadPoolExecutor

    from mjvault.remotes.folder import FolderBackend
    from mjvault.remotes.packs import RemotePacks
    from tests.test_remote_memory import write_remote_packs

    write_remote_packs(tmp_path / "remote", 1)
    packs = RemotePacks(FolderBackend(tmp_path / "remote"), tmp_path / "cache")

    class Unhurried:
        """The packs' own lock, slow to take: the gap a busy machine opens."""

        def __init__(self) -> None:
            self.inner = threading.Lock()

        def __enter__(self) -> None:
            time.sleep(0.01)
            self.inner.acquire()

        def __exit__(self, *exc: object) -> None:
            self.inner.release()

    try:
        ids = list(packs.iter_ids())[:64]
        packs._lock = Unhurried()  # type: ignore[assignment]
        with ThreadPoolExecutor(8) as pool:
            found = list(pool.map(packs.read_entry, ids))
        size = next((tmp_path / "remote" / "packs").iterdir()).stat().st_size
        assert packs.bytes_downloaded == size
        assert all(found)
    finally:
        packs.close()
