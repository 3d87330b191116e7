"""Collections: named sets of jobs in the vault's snapshots, carried by push and clone, kept
by gc, cut by forget, refused bad names, sealed in an encrypted vault."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mjvault import Vault
from mjvault import collections as coll
from mjvault.errors import MjvaultError, UsageError
from mjvault.integrity.forget import forget_jobs
from mjvault.integrity.gc import gc
from mjvault.integrity.verify import verify
from mjvault.remotes.clone import clone
from mjvault.remotes.config import RemoteSpec, normalise_url
from mjvault.remotes.prune import gc_remote
from mjvault.remotes.push import push
from mjvault.remotes.session import connect
from mjvault.snapshots import decode_manifest
from tests.conftest import CHEAP_KDF, PASSPHRASE, png_bytes, record_json, run_cli

JOBS = [f"job-{n:03d}" for n in range(40)]


def _fill(vault: Vault, ids: list[str] = JOBS) -> None:
    with vault.writer("test", thumbnails=False) as writer:
        for n, job_id in enumerate(ids):
            writer.add_job(record_json(job_id, f"prompt {n}"), [writer.put_media(png_bytes(n))])


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Vault:
    vault = Vault.init(tmp_path_factory.mktemp("coll") / "vault")
    _fill(vault)
    return vault


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["a", "b", "Best of 2024"]),
            st.sets(st.sampled_from(JOBS), max_size=8),
            st.sets(st.sampled_from(JOBS), max_size=8),
        ),
        min_size=1,
        max_size=4,
    )
)
def test_changes_round_trip_against_a_model(
    shared: Vault, steps: list[tuple[str, set[str], set[str]]]
) -> None:
    for name in [c.name for c in coll.list_collections(shared)]:
        coll.delete(shared, name)
    model: dict[str, set[str]] = {}
    for name, add, remove in steps:
        model[name] = (model.get(name, set()) | add) - remove
        got = coll.change(shared, name, add=add, remove=remove)
        assert got.jobs == len(model[name])
        assert list(coll.members(shared, name)) == sorted(model[name])
    assert {c.name: c.jobs for c in coll.list_collections(shared)} == {
        k: len(v) for k, v in model.items()
    }


def test_a_change_is_a_snapshot_of_the_same_tree_and_a_sync_keeps_it(vault: Vault) -> None:
    _fill(vault)
    before = vault.head()
    assert before is not None and before.collections is None
    coll.change(vault, "faves", add=["job-001", "job-002"])
    after = vault.head()
    assert after is not None
    assert (after.source, after.tree, after.parent) == ("collection", before.tree, before.id)
    assert after.collections is not None
    assert after.stats["jobs"] == before.stats["jobs"]
    # Unchanged: no snapshot.
    coll.change(vault, "faves", add=["job-001"])
    assert vault.head() == after
    # A later import or sync writes a snapshot that keeps the collections.
    _fill(vault, ["job-new"])
    latest = vault.head()
    assert latest is not None and latest.collections == after.collections
    assert list(coll.members(vault, "faves")) == ["job-001", "job-002"]
    assert verify(vault).ok


def test_manifests_without_collections_keep_their_bytes(vault: Vault) -> None:
    """Old readers ignore the field; a manifest that has none encodes as before."""
    _fill(vault, ["job-1"])
    head = vault.head()
    assert head is not None
    import msgpack

    doc = msgpack.unpackb(vault.read_object(head.id))
    assert "collections" not in doc
    coll.change(vault, "x", add=["job-1"])
    new = vault.head()
    assert new is not None
    doc = msgpack.unpackb(vault.read_object(new.id))
    assert list(doc)[-1] == "collections" and len(doc["collections"]) == 32
    assert decode_manifest(new.id, vault.read_object(new.id)).collections == new.collections


def test_a_large_collection_is_chunked_and_a_small_change_rewrites_little(vault: Vault) -> None:
    _fill(vault, ["job-0"])
    ids = [f"{n:08d}-member" for n in range(30_000)]
    big = coll.change(vault, "big", add=ids)
    assert big.jobs == 30_000 and len(big.chunks) > 3
    assert list(coll.members(vault, "big")) == ids
    one = coll.change(vault, "big", add=["00015000-extra"])
    assert len(set(one.chunks) - set(big.chunks)) <= 2  # content-defined chunk boundaries


def test_gc_keeps_collection_objects_and_forget_cuts_the_job(vault: Vault) -> None:
    _fill(vault)
    coll.change(vault, "faves", add=["job-003", "job-004"])
    head = vault.head()
    assert head is not None and head.collections is not None
    objects = list(coll.object_ids(vault, head.collections))
    gc(vault, grace_seconds=0)
    assert all(vault.store.exists(o) for o in objects)
    forget_jobs(vault, ["job-003"])
    assert list(coll.members(vault, "faves")) == ["job-004"]
    # Every snapshot left (rewrites included) has no collection naming the job.
    for snapshot in vault.snapshots():
        for collection in coll.collections_of(vault, snapshot):
            assert "job-003" not in coll._stream(vault, collection.chunks)
    gc(vault, grace_seconds=0)
    assert verify(vault).ok


def test_a_job_forgotten_after_it_was_selected_is_not_added(vault: Vault) -> None:
    # A page selects ids, a forget runs, then the add takes the lock: the forgotten job must
    # not come back in a collection no later forget can find it in.
    _fill(vault)
    forget_jobs(vault, ["job-003"])
    added = coll.change(vault, "faves", add=["job-003", "job-004"])
    assert added.jobs == 1 and list(coll.members(vault, "faves")) == ["job-004"]


@pytest.mark.parametrize("kind", ["plain", "encrypted", "encrypting-remote"])
def test_push_then_clone_carries_collections(tmp_path: Path, kind: str) -> None:
    if kind == "encrypted":
        source = Vault.init(tmp_path / "src", encrypt=True, passphrase=PASSPHRASE, kdf=CHEAP_KDF)
    else:
        source = Vault.init(tmp_path / "src")
    _fill(source)
    coll.change(source, "faves", add=JOBS[:5])
    coll.change(source, "other", add=JOBS[10:12])
    spec = RemoteSpec(
        "offsite",
        normalise_url(str(tmp_path / "remote")),
        **({"encrypt": True} if kind == "encrypting-remote" else {}),  # type: ignore[arg-type]
    )
    with connect(source, spec, passphrase=PASSPHRASE, create=True, kdf=CHEAP_KDF) as link:
        assert push(source, link).ok
    with connect(source, spec, passphrase=PASSPHRASE) as link:
        # A remote's gc keeps what its snapshots' collections name.
        gc_remote(link, grace_seconds=0, scratch_dir=tmp_path / "scratch")
    copy, pulled = clone(spec, tmp_path / "copy", passphrase=PASSPHRASE)
    with copy:
        assert pulled.ok
        assert copy.head() is not None and copy.head().id == source.head().id  # type: ignore[union-attr]
        assert list(coll.members(copy, "faves")) == JOBS[:5]
        assert list(coll.members(copy, "other")) == JOBS[10:12]
        assert verify(copy).ok
    source.close()


@pytest.mark.parametrize("name", ["a/b", "..", "../x", "a\\b", "", " x", ".hidden", "x" * 101])
def test_bad_names_are_refused(vault: Vault, name: str) -> None:
    with pytest.raises(UsageError):
        coll.check_name(name)


def test_cli_add_show_list_remove_delete_and_a_bad_name(tmp_path: Path) -> None:
    vault = Vault.init(tmp_path / "vault")
    _fill(vault)
    vault.close()
    base = ("--vault", str(tmp_path / "vault"))
    added = run_cli(*base, "--json", "collection", "add", "faves", "job-001", "job-002")
    assert added.returncode == 0, added.stderr
    assert json.loads(added.stdout) == {"name": "faves", "jobs": 2}
    searched = run_cli(*base, "collection", "add", "faves", "--search", "prompt")
    assert searched.returncode == 0, searched.stderr
    shown = run_cli(*base, "--json", "collection", "show", "faves")
    assert json.loads(shown.stdout)["jobs"] == sorted(JOBS)
    removed = run_cli(*base, "collection", "remove", "faves", "job-001")
    assert removed.returncode == 0, removed.stderr
    listed = json.loads(run_cli(*base, "--json", "collection", "list").stdout)
    assert listed == {"collections": [{"name": "faves", "jobs": len(JOBS) - 1}]}
    bad = run_cli(*base, "collection", "add", "../etc", "job-001")
    assert bad.returncode != 0
    assert len(bad.stderr.decode().strip().splitlines()) == 1
    unknown = run_cli(*base, "collection", "remove", "nope", "job-001")
    assert unknown.returncode != 0 and b"no collection" in unknown.stderr
    deleted = run_cli(*base, "collection", "delete", "faves")
    assert deleted.returncode == 0, deleted.stderr
    assert json.loads(run_cli(*base, "--json", "collection", "list").stdout)["collections"] == []


def test_encrypted_vault_keeps_no_member_id_readable(tmp_path: Path) -> None:
    vault = Vault.init(tmp_path / "vault", encrypt=True, passphrase=PASSPHRASE, kdf=CHEAP_KDF)
    ids = [f"secret-member-{n:04d}" for n in range(20)]
    _fill(vault, ids)
    coll.change(vault, "private-set", add=ids)
    for folder, _, files in os.walk(vault.path):
        for name in files:
            data = Path(folder, name).read_bytes()
            assert b"secret-member" not in data, Path(folder, name)
            assert b"private-set" not in data, Path(folder, name)
    vault.close()


def test_no_head_and_unknown_names_are_errors(vault: Vault) -> None:
    with pytest.raises(MjvaultError, match="no snapshot"):
        coll.change(vault, "x", add=["job"])
    _fill(vault, ["job"])
    with pytest.raises(MjvaultError, match="no collection"):
        list(coll.members(vault, "nope"))
    assert coll.delete(vault, "nope") is False


def test_a_change_keeps_an_unfinished_runs_checkpoint_resumable(vault: Vault) -> None:
    _fill(vault, ["job-a"])
    writer = vault.writer("test", thumbnails=False)
    writer.start()
    writer.add_job(record_json("job-b"), [writer.put_media(png_bytes(99))])
    writer.abort()  # as a killed or interrupted sync leaves it: a checkpoint based on HEAD
    coll.change(vault, "faves", add=["job-a"])
    with vault.writer("test", thumbnails=False) as resumed:
        assert resumed.stats.resumed_from_checkpoint
    head = vault.head()
    assert head is not None and head.collections is not None
    assert {e.job_id for e in vault.entries()} == {"job-a", "job-b"}
    assert list(coll.members(vault, "faves")) == ["job-a"]


def test_a_members_chunk_read_through_an_encrypting_remote_comes_back_as_it_is() -> None:
    # A forget that reads a remote-only snapshot's collection fetches its chunks through the
    # id translation of an encrypting remote: chunks name jobs, so nothing is translated (and
    # nothing may refuse them, or the remote stays pending with the forgotten job for good).
    from mjvault.collections import decode_chunk, encode_chunk
    from mjvault.remotes.crypto import rewrite_ids

    chunk = encode_chunk(["job-a", "job-b"])
    assert rewrite_ids(chunk, lambda _: None) == chunk
    assert decode_chunk("0" * 64, rewrite_ids(chunk, lambda _: None)) == ["job-a", "job-b"]


def test_verify_remote_reports_missing_collection_objects(tmp_path: Path) -> None:
    from mjvault.remotes.verify import verify_remote

    source = Vault.init(tmp_path / "src")
    _fill(source, JOBS[:6])
    coll.change(source, "faves", add=JOBS[:3])
    spec = RemoteSpec("offsite", normalise_url(str(tmp_path / "remote")))
    with connect(source, spec, create=True) as link:
        assert push(source, link).ok
        assert verify_remote(link).ok
    head = source.head()
    assert head is not None and head.collections is not None
    chunks = coll.get(source, "faves").chunks
    # The remote loses its packs (where the list and its member chunks travel): verify
    # must name collection objects among what is missing, not only tree-reached ones.
    for pack in (tmp_path / "remote" / "packs").iterdir():
        pack.unlink()
    with connect(source, spec) as link:
        report = verify_remote(link)
    missing = {problem.object_id for problem in report.problems if problem.kind == "missing"}
    assert {head.collections, *chunks} & missing
    source.close()
