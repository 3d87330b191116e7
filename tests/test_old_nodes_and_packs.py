"""A vault written with version 1 leaves and version 1 packs (what mjvault wrote before
both had a version 2) is read, verified, gc'd, written to and copied through a remote by
today's mjvault: old nodes and packs are read as they are, new ones written in version 2."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import msgpack
import pytest

from mjvault import Vault, tree
from mjvault.integrity.forget import KeepPolicy, forget_snapshots
from mjvault.integrity.gc import gc
from mjvault.integrity.verify import verify
from mjvault.remotes.clone import clone
from mjvault.store import packfile
from tests.conftest import CHEAP_KDF, PASSPHRASE, png_bytes, record_json
from tests.test_remote_packs import push_to, remote_keys
from tests.test_remotes import folder_spec, state

JOBS = 540


def job_id(n: int) -> str:
    return str(uuid.UUID(int=n * 7919 + 1))


def add_jobs(vault: Vault, numbers: range, prompt: str = "a red fox") -> None:
    with vault.writer("test") as writer:
        for n in numbers:
            slots = [writer.put_media(png_bytes(n, 300)), None]  # a missing image too
            writer.add_job(record_json(job_id(n), f"{prompt} number {n} in the snow"), slots)


@contextmanager
def written_as_before() -> Iterator[None]:
    """Leaves and packs written as mjvault wrote them before their version 2."""
    leaf, pack = tree.LEAF_VERSION, packfile.PACK_VERSION
    tree.LEAF_VERSION, packfile.PACK_VERSION = 1, 1
    try:
        yield
    finally:
        tree.LEAF_VERSION, packfile.PACK_VERSION = leaf, pack


def make_old_vault(path: Path, *, encrypted: bool) -> None:
    with written_as_before():
        if encrypted:
            vault = Vault.init(path, encrypt=True, passphrase=PASSPHRASE, kdf=CHEAP_KDF)
        else:
            vault = Vault.init(path)
        with vault:
            add_jobs(vault, range(510))  # a pack of 500 records or more trains the dictionary
            add_jobs(vault, range(510, JOBS))
    config = json.loads((path / "config").read_bytes())
    os.chmod(path / "config", 0o644)
    (path / "config").write_text(json.dumps(config | {"version": 2}))


def config_version(vault: Vault) -> int:
    return int(json.loads((vault.path / "config").read_bytes())["version"])


def open_vault(path: Path, *, encrypted: bool) -> Vault:
    return Vault.open(path, passphrase=PASSPHRASE if encrypted else None)


def leaf_versions(vault: Vault) -> dict[int, int]:
    """How many leaves of each version HEAD's tree has."""
    head = vault.head()
    assert head is not None
    counts: dict[int, int] = {}
    for node_id in vault.tree.node_ids(head.tree):
        doc = msgpack.unpackb(vault.store.read(node_id))
        if doc["t"] == "leaf":
            counts[doc["v"]] = counts.get(doc["v"], 0) + 1
    return counts


def pack_versions(vault: Vault) -> dict[int, int]:
    counts: dict[int, int] = {}
    for name in vault.store.packs.names():
        with open(vault.store.packs.path(name), "rb") as handle:
            version = handle.read(6)[4]
        counts[version] = counts.get(version, 0) + 1
    return counts


def expected(vault: Vault, changed: dict[int, str]) -> None:
    """Every job reads back as written: its record (prompt) and its images."""
    entries = {e.job_id: e for e in vault.entries()}
    for n in sorted(set(range(JOBS)) | set(changed)):
        entry = entries[job_id(n)]
        prompt = changed.get(n, "a red fox")
        assert vault.record_json(entry) == record_json(
            job_id(n), f"{prompt} number {n} in the snow"
        )
        assert entry.images[1] is None
        assert vault.read_object(entry.images[0]) == png_bytes(n, 300)  # type: ignore[arg-type]


@pytest.mark.parametrize("encrypted", [False, True])
def test_an_old_vault_is_read_verified_gcd_and_written_to(tmp_path: Path, encrypted: bool) -> None:
    path = tmp_path / "vault"
    make_old_vault(path, encrypted=encrypted)
    with open_vault(path, encrypted=encrypted) as vault:
        assert set(leaf_versions(vault)) == {1}
        assert set(pack_versions(vault)) == {1}
        expected(vault, {})
        assert verify(vault, read_data=True).ok
        gc(vault, grace_seconds=0)
        expected(vault, {})
        assert set(pack_versions(vault)) == {1}  # nothing to drop: the packs stay as they are
        assert config_version(vault) == 2  # nothing written yet

        # New writes: one job changed, a few added. Their leaves and packs are version 2,
        # the leaves they did not touch stay version 1.
        add_jobs(vault, range(5, 6), prompt="a blue fox")
        add_jobs(vault, range(JOBS, JOBS + 20), prompt="a blue fox")
        changed = {5: "a blue fox"} | {n: "a blue fox" for n in range(JOBS, JOBS + 20)}
        versions = leaf_versions(vault)
        assert versions.get(1) and versions.get(2), versions
        assert set(pack_versions(vault)) == {1, 2}
        assert config_version(vault) == 3  # marked before the first new pack
        expected(vault, changed)
        assert verify(vault, read_data=True).ok

        # With the older snapshots forgotten, gc drops job 5's old record and the nodes only
        # they reached: the old packs that held them are rewritten into version 2 packs,
        # their other objects (version 1 leaves among them) copied as they are.
        forget_snapshots(vault, policy=KeepPolicy(last=1))
        report = gc(vault, grace_seconds=0)
        assert report.removed > 0 and report.packs_rewritten > 0
        assert pack_versions(vault).get(2)
        assert set(leaf_versions(vault)) == {1, 2}
        expected(vault, changed)
        assert verify(vault, read_data=True).ok
        vault.rebuild_index()
        assert {e.job_id for e in vault.entries()} == {job_id(n) for n in range(JOBS + 20)}
        assert len(vault.current_index().search(words=["fox"])) == JOBS + 20


@pytest.mark.parametrize("kind", ["plain", "encrypted-vault", "encrypting-remote"])
def test_a_vault_of_old_and_new_nodes_goes_through_a_remote_unchanged(
    tmp_path: Path, kind: str
) -> None:
    encrypted = kind == "encrypted-vault"
    path = tmp_path / "vault"
    make_old_vault(path, encrypted=encrypted)
    spec = folder_spec(tmp_path, encrypt=kind == "encrypting-remote")
    with open_vault(path, encrypted=encrypted) as source:
        assert push_to(source, spec).ok  # old nodes only
        add_jobs(source, range(JOBS, JOBS + 20), prompt="a blue fox")
        assert push_to(source, spec).ok  # and new ones
        assert set(leaf_versions(source)) == {1, 2}
        # A remote's packs stay version 1, what any mjvault that reads packs reads.
        root = Path(spec.url.removeprefix("file://"))
        for pack in (root / "packs").iterdir():
            assert pack.read_bytes()[4] == 1
        assert remote_keys(spec, "packs/")
        copy, pulled = clone(spec, tmp_path / "copy", passphrase=PASSPHRASE)
        with copy:
            assert pulled.ok
            # Translated and back, every node is the same bytes: same tree, same snapshots.
            assert copy.head() == source.head()
            assert state(copy) == state(source)
            assert leaf_versions(copy) == leaf_versions(source)
            assert set(pack_versions(copy)) == {2}  # pulled objects land in new packs
            assert verify(copy, read_data=True).ok
        assert os.path.isdir(root / "packs")
