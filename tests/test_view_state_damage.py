"""A view's saved state read as it was written, or refused as damaged: an empty or foreign
``.files``, a header field of the wrong type, a damaged list that `checkout --remove` must
still be able to forget; and a vault lock file that is a symlink. Real vaults, real SQLite
files, the CLI run in process."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable
from pathlib import Path

import msgpack
import pytest
import zstandard

from mjvault import Vault
from mjvault.cli.root import run
from mjvault.errors import IntegrityError
from mjvault.integrity.forget import KeepPolicy, forget_snapshots
from mjvault.views import checkout
from mjvault.views.links import LinkKind
from mjvault.views.registry import ViewDefinition, ViewRegistry
from tests.conftest import png_bytes, record_json

Ran = tuple[int, str, str]
Cli = Callable[..., Ran]


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Cli:
    """The `mjvault` command in this process: (vault, *args) -> exit code, stdout, stderr."""
    monkeypatch.chdir(tmp_path)
    for key in list(os.environ):
        if key.startswith("MJVAULT_"):
            monkeypatch.delenv(key)

    def invoke(vault: Vault, *args: str) -> Ran:
        capsys.readouterr()
        code = 0
        try:
            run(["--vault", str(vault.path), *args])
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        out, err = capsys.readouterr()
        return code, out, err

    return invoke


def shown_only_by_the_view(vault: Vault, directory: Path) -> list[str]:
    """A view of three jobs (two images each), then job-1 gone from every snapshot: its
    objects are reachable only through the view's links. Returns the links' objects."""
    with vault.writer("test") as writer:
        for n in range(3):
            slots = [writer.put_media(png_bytes(n * 10 + i, 2000)) for i in range(2)]
            writer.add_job(record_json(f"job-{n}", f"prompt {n}"), slots)
    definition = ViewDefinition(
        name="s", directory=directory, template="{job_id}_{index}.{ext}", link=LinkKind.SYMLINK
    )
    checkout(vault, definition)
    shown = [i for i in vault.entry("job-1").images if i is not None]
    with vault.writer("removal") as writer:  # a writer does not refresh views
        writer.remove_job("job-1")
    forget_snapshots(vault, policy=KeepPolicy(last=1))
    return shown


def links_dangle(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.is_symlink() and not p.exists())


@pytest.mark.parametrize("damage", ["empty", "version 0", "no table"])
def test_gc_refuses_a_view_whose_file_list_is_empty_or_blank(
    vault: Vault, tmp_path: Path, cli: Cli, damage: str
) -> None:
    directory = tmp_path / "s"
    shown_only_by_the_view(vault, directory)
    files = vault.path / "views" / "s.files"
    if damage == "empty":
        files.write_bytes(b"")
    else:
        files.unlink()
        db = sqlite3.connect(files)
        if damage == "no table":
            db.execute("PRAGMA user_version = 1")
        db.execute("CREATE TABLE other (x)")
        db.commit()
        db.close()
    before = files.read_bytes()
    code, _, err = cli(vault, "gc", "--grace", "0")
    assert code == 3, err
    assert "s.files" in err and "Traceback" not in err
    assert links_dangle(directory) == []
    code, out, _ = cli(vault, "checkout", "--list")
    assert "damaged" in out
    assert files.read_bytes() == before  # loading never rewrites what it found


def test_a_list_with_no_rows_where_the_header_counts_some_is_damage(
    vault: Vault, tmp_path: Path, cli: Cli
) -> None:
    directory = tmp_path / "s"
    shown_only_by_the_view(vault, directory)
    db = sqlite3.connect(vault.path / "views" / "s.files")
    db.execute("DELETE FROM files")
    db.commit()
    db.close()
    code, _, err = cli(vault, "gc", "--grace", "0")
    assert code == 3 and "is empty (6 files recorded)" in err
    assert links_dangle(directory) == []


def test_a_garbage_list_is_found_at_load_and_checkout_remove_forgets_it(
    vault: Vault, tmp_path: Path, cli: Cli
) -> None:
    directory = tmp_path / "s"
    shown_only_by_the_view(vault, directory)
    views = vault.path / "views"
    (views / "s.files").write_bytes(b"garbage\n")
    code, out, _ = cli(vault, "--json", "checkout", "--list")
    assert "damaged" in out and '"files": 6' not in out
    code, out, err = cli(vault, "checkout")  # refresh every view
    assert code != 0 and "Traceback" not in err, err
    assert "s.files is damaged" in out + err, out + err
    code, _, err = cli(vault, "gc", "--grace", "0")
    assert code == 3 and "checkout --remove" in err
    code, out, err = cli(vault, "checkout", "--remove", "s")
    assert code == 0, err
    assert "forgotten" in out + err
    assert not (views / "s.view").exists() and not (views / "s.files").exists()
    assert len(list(directory.iterdir())) == 6  # its files are left in place
    code, _, err = cli(vault, "gc", "--grace", "0")
    assert code == 0, err


def test_verify_views_reports_every_view_when_one_list_is_damaged(
    vault: Vault, tmp_path: Path, cli: Cli
) -> None:
    shown_only_by_the_view(vault, tmp_path / "s")
    definition = ViewDefinition(
        name="t", directory=tmp_path / "t", template="{job_id}_{index}.{ext}", link=LinkKind.COPY
    )
    checkout(vault, definition)
    registry = ViewRegistry(vault)
    view = registry.load("s")
    (vault.path / "views" / "s.files").write_bytes(b"garbage\n")  # after the probe
    from mjvault.views.check import check_view

    with pytest.raises(IntegrityError):
        list(check_view(vault, view, read_data=False))
    code, out, err = cli(vault, "verify", "--views")
    assert code != 0 and "Traceback" not in err
    assert "view s:" in out + err and "damaged" in out + err


def rewrite_header(vault: Vault, name: str, **fields: object) -> None:
    path = vault.path / "views" / f"{name}.view"
    data = path.read_bytes()
    doc = msgpack.unpackb(zstandard.ZstdDecompressor().decompress(data[5:]), raw=False)
    doc.update(fields)
    packed = msgpack.packb(doc, use_bin_type=True)
    path.write_bytes(data[:5] + zstandard.ZstdCompressor().compress(packed))


@pytest.mark.parametrize(
    "fields",
    [
        {"file_count": float("inf")},
        {"file_count": 2.5},
        {"file_count": True},
        {"file_count": -1},
        {"file_count": "6"},
        {"unfinished": "no"},
        {"private_files": 1},
        {"collection_chunks": [1, 2]},
        {"tree": 5},
        {"blocked": "x"},
        {"v": True},
    ],
)
def test_a_header_field_of_the_wrong_type_is_damage(
    vault: Vault, tmp_path: Path, cli: Cli, fields: dict[str, object]
) -> None:
    directory = tmp_path / "s"
    shown_only_by_the_view(vault, directory)
    rewrite_header(vault, "s", **fields)
    code, out, err = cli(vault, "gc", "--grace", "0")
    assert code == 3 and "Traceback" not in err, err
    assert "s.view" in err or "not supported" in err, err
    code, out, err = cli(vault, "checkout", "--list")
    assert code == 0 and ("damaged" in out or "not supported" in out), out + err
    assert links_dangle(directory) == []


def test_a_definition_field_of_the_wrong_type_is_damage(
    vault: Vault, tmp_path: Path, cli: Cli
) -> None:
    shown_only_by_the_view(vault, tmp_path / "s")
    path = vault.path / "views" / "s.view"
    doc = msgpack.unpackb(zstandard.ZstdDecompressor().decompress(path.read_bytes()[5:]))
    rewrite_header(vault, "s", definition=doc["definition"] | {"auto_refresh": float("inf")})
    code, out, err = cli(vault, "checkout", "--list")
    assert code == 0 and "auto_refresh" in out, out + err


def test_a_view_without_files_and_no_list_still_loads(vault: Vault, tmp_path: Path) -> None:
    definition = ViewDefinition(
        name="e", directory=tmp_path / "e", template="{job_id}_{index}.{ext}", link=LinkKind.COPY
    )
    checkout(vault, definition)  # an empty vault: no files
    (vault.path / "views" / "e.files").unlink()
    view = ViewRegistry(vault).load("e")
    assert view.file_count() == 0 and list(view.iter_files()) == []


def test_unlock_names_a_symlinked_lock_file_and_leaves_its_target(
    vault: Vault, tmp_path: Path, cli: Cli
) -> None:
    target = tmp_path / "elsewhere"
    target.write_text("keep me")
    lock = vault.path / "lock"
    lock.unlink(missing_ok=True)
    lock.symlink_to(target)
    for args in (["unlock"], ["gc", "--grace", "0"]):
        code, _, err = cli(vault, *args)
        assert code != 0 and "Traceback" not in err
        assert len(err.strip().splitlines()) == 1, err
        assert f"{lock} is a symbolic link" in err and "delete" in err
    assert target.read_text() == "keep me"
    lock.unlink()
    code, _, err = cli(vault, "unlock")
    assert code == 0, err
