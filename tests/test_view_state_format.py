"""docs/FORMAT.md §1.2 read as a second implementation would: a view's state file and its
file list decoded with msgpack, zstd and SQLite alone, every field where the text says, and
what a reader must do with a state that is lost, damaged or newer."""

from __future__ import annotations

import hashlib
import json
import os
import re
import sqlite3
import zlib
from pathlib import Path
from typing import Any

import blake3
import msgpack
import pytest
import zstandard

from mjvault import Vault
from mjvault.errors import CorruptObject, IntegrityError
from mjvault.integrity.forget import KeepPolicy, forget_snapshots
from mjvault.integrity.gc import gc
from mjvault.integrity.reachability import UnreadableGraph
from mjvault.integrity.verify import verify
from mjvault.views import checkout
from mjvault.views.links import LinkKind
from mjvault.views.reconcile import remove_view
from mjvault.views.registry import ViewDefinition, ViewRegistry
from tests.conftest import png_bytes, record_json

FORMAT = Path(__file__).resolve().parents[1] / "docs" / "FORMAT.md"
TEMPLATE = "{job_id}_{index}.{ext}"
STATE_KEYS = [
    "v", "definition", "fingerprint", "tree", "snapshot_id", "vault_path", "file_count",
    "files", "blocked", "refreshed", "unfinished", "private_files",
]  # fmt: skip
DEFINITION_KEYS = [
    "name", "directory", "template", "link", "filter", "snapshot", "auto_refresh",
    "embed_metadata", "private",
]  # fmt: skip


def make_view(vault: Vault, directory: Path, name: str = "links") -> None:
    with vault.writer("test") as writer:
        for n in range(3):
            slots = [writer.put_media(png_bytes(n * 10 + i, 600)) for i in range(2)]
            writer.add_job(record_json(f"job-{n}", f"prompt {n}"), slots)
    definition = ViewDefinition(
        name=name, directory=directory, template=TEMPLATE, link=LinkKind.SYMLINK
    )
    checkout(vault, definition)


def read_state(path: Path) -> dict[str, Any]:
    """§1.2's `Z` encoding: magic, encoding byte, one zstd frame of a msgpack map."""
    data = path.read_bytes()
    assert data[:4] == b"MJVW" and data[4:5] == b"Z"
    doc = msgpack.unpackb(zstandard.ZstdDecompressor().decompress(data[5:]), raw=False)
    assert isinstance(doc, dict)
    return doc


def write_state(path: Path, doc: dict[str, Any]) -> None:
    packed = msgpack.packb(doc, use_bin_type=True)
    path.write_bytes(b"MJVW" + b"Z" + zstandard.ZstdCompressor(level=3).compress(packed))


def path_key(text: str) -> int:
    data = text.encode("utf-8")
    return (zlib.crc32(data) << 31) ^ zlib.adler32(data)


def test_every_field_is_where_format_md_says(vault: Vault, tmp_path: Path) -> None:
    make_view(vault, tmp_path / "links")
    doc = read_state(vault.path / "views" / "links.view")
    assert list(doc) == STATE_KEYS  # in this order, as written
    assert doc["v"] == 3 and doc["files"] is None and doc["blocked"] == []
    assert doc["unfinished"] is False and doc["private_files"] is False
    head = vault.head()
    assert head is not None and doc["tree"] == head.tree and doc["snapshot_id"] == head.id
    assert doc["vault_path"] == str(vault.path.resolve())
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00", doc["refreshed"])
    definition = doc["definition"]
    assert list(definition) == DEFINITION_KEYS
    assert definition["link"] == "symlink" and definition["directory"] == str(tmp_path / "links")
    assert definition["filter"] == {
        "types": [], "since": None, "until": None, "search": None, "params": [],
    }  # fmt: skip
    # The fingerprint, from the text's recipe alone.
    shown = {k: v for k, v in definition.items() if k != "private"}
    shown |= {"name": None, "auto_refresh": None}
    text = json.dumps(shown, sort_keys=True).encode("utf-8")
    assert doc["fingerprint"] == hashlib.blake2b(text, digest_size=16).hexdigest()
    # The file list: one row per file, keys as the text computes them.
    with sqlite3.connect(vault.path / "views" / "links.files") as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == 1
        rows = db.execute(
            "SELECT jk, job, idx, path, oid, kind, plain, size, mtime, fh, ph FROM files"
        ).fetchall()
    assert len(rows) == doc["file_count"] == 6
    for jk, job, idx, path, oid, kind, plain, size, mtime, fh, ph in rows:
        assert jk == int.from_bytes(blake3.blake3(job.encode()).digest(8), "big") >> 1
        assert fh == path_key(path.lower()) and plain is None and ph is None
        assert kind == "symlink" and (size, mtime) == (0, 0)
        link = tmp_path / "links" / path
        assert os.path.basename(os.readlink(link)) == oid == vault.entry(job).images[idx]
    # Every key the code writes is named in FORMAT.md's section.
    section = FORMAT.read_text(encoding="utf-8").split("### 1.2 ")[1].split("\n## ")[0]
    for key in [*STATE_KEYS, "collection_chunks", *DEFINITION_KEYS]:
        assert f"| `{key}` |" in section, key


def test_an_encrypted_vaults_state_is_an_object_sealed_under_its_name(
    encrypted_vault: Vault, tmp_path: Path
) -> None:
    make_view(encrypted_vault, tmp_path / "copies")
    data = (encrypted_vault.path / "views" / "links.view").read_bytes()
    assert data[:5] == b"MJVWE" and data[5:9] == b"MJVE"
    keys = encrypted_vault.store.keys
    assert keys is not None
    seal_id = hashlib.blake2b(b"mjvault view links", digest_size=32).hexdigest()
    doc = msgpack.unpackb(keys.open(seal_id, data[5:]), raw=False)
    assert list(doc) == STATE_KEYS and doc["file_count"] == 6
    other = hashlib.blake2b(b"mjvault view other", digest_size=32).hexdigest()
    with pytest.raises(CorruptObject):  # bound to its name: it does not open as another's
        keys.open(other, data[5:])


def test_a_newer_version_is_refused_and_gc_does_not_sweep(vault: Vault, tmp_path: Path) -> None:
    make_view(vault, tmp_path / "links")
    path = vault.path / "views" / "links.view"
    write_state(path, read_state(path) | {"v": 5})
    with pytest.raises(IntegrityError, match="version 5 is not supported"):
        ViewRegistry(vault).load("links")
    with pytest.raises(UnreadableGraph, match="view links"):
        gc(vault, grace_seconds=0)


def test_unknown_keys_are_ignored_and_missing_ones_take_their_defaults(
    vault: Vault, tmp_path: Path
) -> None:
    make_view(vault, tmp_path / "links")
    path = vault.path / "views" / "links.view"
    doc = read_state(path)
    for key in ("fingerprint", "blocked", "refreshed", "unfinished", "private_files"):
        del doc[key]
    write_state(path, doc | {"from_a_later_writer": [1, 2]})
    view = ViewRegistry(vault).load("links")
    assert view.fingerprint is None and not view.blocked and not view.unfinished
    assert view.file_count() == 6


@pytest.mark.parametrize(
    ("version", "change"),
    [
        pytest.param(3, lambda doc: doc.pop("definition"), id="no definition"),
        pytest.param(3, lambda doc: doc["definition"].pop("link"), id="no link"),
        pytest.param(3, lambda doc: doc["definition"].update(link="wormhole"), id="unknown link"),
        pytest.param(3, lambda doc: doc.update(blocked=[["job-0", 0]]), id="short blocked row"),
        pytest.param(3, lambda doc: doc.update(definition=[]), id="definition not a map"),
        pytest.param(2, lambda doc: doc.update(files="not bin"), id="files neither nil nor bin"),
    ],
)
def test_a_damaged_document_is_refused_and_stops_gc(
    vault: Vault, tmp_path: Path, version: int, change: Any
) -> None:
    make_view(vault, tmp_path / "links")
    path = vault.path / "views" / "links.view"
    doc = read_state(path) | {"v": version}
    change(doc)
    write_state(path, doc)
    with pytest.raises(IntegrityError):
        ViewRegistry(vault).load("links")
    with pytest.raises(UnreadableGraph, match="view links"):
        gc(vault, grace_seconds=0)
    # Listed with its error, and forgotten by --remove with its files left in place.
    (summary,) = ViewRegistry(vault).summaries()
    assert summary["name"] == "links" and "error" in summary
    remove_view(vault, "links")
    assert not path.exists() and (tmp_path / "links" / "job-0_0.png").is_symlink()


def test_a_lost_file_list_is_damage_not_an_empty_view(vault: Vault, tmp_path: Path) -> None:
    make_view(vault, tmp_path / "links")
    shown = vault.entry("job-1").images[0]
    with vault.writer("removal") as writer:  # job-1 leaves the vault; the view still shows it
        writer.remove_job("job-1")
    forget_snapshots(vault, policy=KeepPolicy(last=1))
    (vault.path / "views" / "links.files").unlink()
    # Read as an empty list, gc would delete what the view's links point at.
    with pytest.raises(UnreadableGraph, match="view links"):
        gc(vault, grace_seconds=0)
    assert shown is not None and vault.object_path(shown).exists()
    assert (tmp_path / "links" / "job-1_0.png").resolve().exists()
    assert not verify(vault, views=True).ok
    assert not (vault.path / "views" / "links.files").exists()  # no reader made an empty one
    remove_view(vault, "links")  # forgotten; its files, which it can no longer tell, stay
    assert not (vault.path / "views" / "links.view").exists()
    assert (tmp_path / "links" / "job-0_0.png").is_symlink()


def test_a_view_with_no_files_needs_no_list(vault: Vault, tmp_path: Path) -> None:
    definition = ViewDefinition(
        name="empty", directory=tmp_path / "empty", template=TEMPLATE, link=LinkKind.SYMLINK
    )
    checkout(vault, definition)  # an empty vault: nothing to show
    (vault.path / "views" / "empty.files").unlink()
    assert ViewRegistry(vault).load("empty").file_count() == 0
    gc(vault, grace_seconds=0)
