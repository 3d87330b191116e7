"""Checkout views against real vaults, real files and real symlinks."""

from __future__ import annotations

import io
import os
from pathlib import Path

import msgpack
import pytest
from PIL import Image

from mjvault import Vault
from mjvault.errors import IntegrityError, UsageError
from mjvault.views.filters import ViewFilter
from mjvault.views.links import LinkKind
from mjvault.views.reconcile import (
    checkout,
    list_views,
    refresh_views,
    remove_view,
)
from mjvault.views.registry import STATE_VERSION, ViewDefinition, ViewRegistry
from mjvault.views.template import Template
from tests.conftest import png_bytes, record_json
from tests.packdamage import spoil_packed

TEMPLATE = "{prompt:30}_{job_id}_{index}.{ext}"


def add_jobs(vault: Vault, ids: range | list[int], *, images: int = 2, prompt: str = "fox") -> None:
    with vault.writer("test") as writer:
        for n in ids:
            oids = [writer.put_media(png_bytes(n * 10 + i)) for i in range(images)]
            writer.add_job(record_json(f"job-{n:04d}", f"{prompt} number {n}"), oids)


def remove_jobs(vault: Vault, ids: list[int]) -> None:
    with vault.writer("test") as writer:
        for n in ids:
            writer.remove_job(f"job-{n:04d}")


def define(tmp_path: Path, name: str = "all", **options: object) -> ViewDefinition:
    fields: dict[str, object] = {
        "name": name,
        "directory": tmp_path / "views" / name,
        "template": TEMPLATE,
        "link": LinkKind.SYMLINK,
    } | options
    return ViewDefinition(**fields)  # type: ignore[arg-type]


def files_in(root: Path) -> dict[str, Path]:
    out = {}
    for path in root.rglob("*"):
        if path.is_symlink() or path.is_file():
            out[path.relative_to(root).as_posix()] = path
    return out


def test_checkout_creates_relative_symlinks_to_the_images(vault: Vault, tmp_path: Path) -> None:
    add_jobs(vault, range(5))
    report = checkout(vault, define(tmp_path))
    assert (report.added, report.removed, report.conflicts, report.mode) == (10, 0, 0, "full")
    root = tmp_path / "views" / "all"
    found = files_in(root)
    assert len(found) == 10
    link = found["fox number 3_job-0003_1.png"]
    assert link.is_symlink() and not os.path.isabs(os.readlink(link))
    assert link.read_bytes() == png_bytes(31)


def test_refresh_after_adding_jobs_touches_only_new_files(vault: Vault, tmp_path: Path) -> None:
    add_jobs(vault, range(20))
    checkout(vault, define(tmp_path))
    root = tmp_path / "views" / "all"
    before = {name: os.lstat(p).st_mtime_ns for name, p in files_in(root).items()}
    inodes = {name: os.lstat(p).st_ino for name, p in files_in(root).items()}
    add_jobs(vault, range(20, 23))
    report = refresh_views(vault).views[0]
    assert report.mode == "incremental"
    assert report.jobs_examined == 3  # the tree diff, not a walk of all 23 jobs
    assert (report.added, report.removed, report.unchanged) == (6, 0, 40)
    after = files_in(root)
    assert len(after) == 46
    for name, mtime in before.items():
        assert os.lstat(after[name]).st_mtime_ns == mtime
        assert os.lstat(after[name]).st_ino == inodes[name]
    again = refresh_views(vault).views[0]
    assert again.mode == "up-to-date" and again.jobs_examined == 0


def test_removed_jobs_leave_the_view(vault: Vault, tmp_path: Path) -> None:
    add_jobs(vault, range(6))
    checkout(vault, define(tmp_path, template="{job_id}/{index}.{ext}"))
    remove_jobs(vault, [1, 4])
    report = refresh_views(vault).views[0]
    assert (report.removed, report.added) == (4, 0)
    root = tmp_path / "views" / "all"
    assert not (root / "job-0001").exists()  # emptied directories go too
    assert sorted(files_in(root)) == [f"job-000{n}/{i}.png" for n in (0, 2, 3, 5) for i in (0, 1)]


def test_user_file_in_the_way_is_kept_and_retried(vault: Vault, tmp_path: Path) -> None:
    add_jobs(vault, range(3))
    root = tmp_path / "views" / "all"
    root.mkdir(parents=True)
    mine = root / "fox number 1_job-0001_0.png"
    mine.write_bytes(b"my own edit")
    (root / "notes.txt").write_text("mine too")
    report = checkout(vault, define(tmp_path))
    assert report.conflicts == 1 and report.added == 5
    assert report.conflict_paths == [str(mine)]
    assert mine.read_bytes() == b"my own edit"
    # Still in the way: still reported, still untouched.
    add_jobs(vault, [9])
    assert refresh_views(vault).views[0].conflicts == 1
    # Out of the way: the next refresh fills the gap.
    mine.unlink()
    report = refresh_views(vault).views[0]
    assert report.conflicts == 0 and report.added == 1
    assert mine.is_symlink()
    # Removing the view removes its files only.
    removed = remove_view(vault, "all")
    assert removed.removed == 8
    assert sorted(files_in(root)) == ["notes.txt"]
    assert list_views(vault) == []


def test_a_file_the_user_replaced_is_never_removed(vault: Vault, tmp_path: Path) -> None:
    add_jobs(vault, range(2))
    checkout(vault, define(tmp_path, link=LinkKind.COPY))
    root = tmp_path / "views" / "all"
    edited = root / "fox number 0_job-0000_0.png"
    edited.write_bytes(b"retouched by hand")
    remove_jobs(vault, [0])
    report = refresh_views(vault).views[0]
    assert report.kept == 1 and report.removed == 1
    assert edited.read_bytes() == b"retouched by hand"


def test_view_of_an_older_snapshot_stays_put(vault: Vault, tmp_path: Path) -> None:
    add_jobs(vault, range(3))
    old = vault.head()
    assert old is not None
    add_jobs(vault, range(3, 5))
    remove_jobs(vault, [0])
    report = checkout(vault, define(tmp_path, name="then", snapshot=old.id[:8]))
    assert report.added == 6 and report.snapshot == old.id
    root = tmp_path / "views" / "then"
    assert (
        sorted(p.split("_")[1] for p in files_in(root))
        == ["job-0000"] * 2 + ["job-0001"] * 2 + ["job-0002"] * 2
    )
    add_jobs(vault, [7])
    assert refresh_views(vault).views[0].mode == "up-to-date"


def test_filters_select_jobs(vault: Vault, tmp_path: Path) -> None:
    add_jobs(vault, range(3), prompt="red fox")
    add_jobs(vault, range(3, 5), prompt="blue whale")
    view_filter = ViewFilter.build(search="FOX", params={"ar": "16:9", "version": "6"})
    report = checkout(vault, define(tmp_path, name="foxes", filter=view_filter))
    assert report.added == 6
    none = checkout(
        vault, define(tmp_path, name="none", filter=ViewFilter.build(params={"ar": "1:1"}))
    )
    assert none.added == 0


def test_redefining_the_template_moves_files(vault: Vault, tmp_path: Path) -> None:
    add_jobs(vault, range(3))
    checkout(vault, define(tmp_path))
    report = checkout(vault, define(tmp_path, template="{date:%Y/%m}/{job_id}_{index}.{ext}"))
    assert report.mode == "full" and (report.added, report.removed) == (6, 6)
    root = tmp_path / "views" / "all"
    assert sorted(files_in(root))[0] == "2023/05/job-0000_0.png"


def test_colliding_names_are_told_apart_whatever_the_order(vault: Vault, tmp_path: Path) -> None:
    add_jobs(vault, [5, 2], images=1)
    checkout(vault, define(tmp_path, template="{prompt:3}.{ext}"))
    add_jobs(vault, [1], images=1)  # sorts first: takes the plain name, job-0002 moves
    report = refresh_views(vault).views[0]
    assert report.conflicts == 0
    root = tmp_path / "views" / "all"
    found = files_in(root)
    assert sorted(found) == ["fox.png", "fox~job0002_0.png", "fox~job0005_0.png"]
    assert found["fox.png"].read_bytes() == png_bytes(10)

    # The same set of jobs checked out in one go gives the same names.
    fresh = checkout(vault, define(tmp_path, name="fresh", template="{prompt:3}.{ext}"))
    assert fresh.added == 3
    assert sorted(files_in(tmp_path / "views" / "fresh")) == sorted(found)


def test_encrypted_vault_makes_decrypted_copies(encrypted_vault: Vault, tmp_path: Path) -> None:
    add_jobs(encrypted_vault, range(2))
    report = checkout(encrypted_vault, define(tmp_path))
    assert report.link == "copy" and any("encrypted" in note for note in report.notes)
    found = files_in(tmp_path / "views" / "all")
    assert len(found) == 4
    for path in found.values():
        assert not path.is_symlink()
    assert found["fox number 1_job-0001_0.png"].read_bytes() == png_bytes(10)
    # The view's own state and its file list name prompts, so they are sealed too.
    state = (encrypted_vault.path / "views" / "all.view").read_bytes()
    assert b"fox number" not in state
    listed = (encrypted_vault.path / "views" / "all.files").read_bytes()
    assert b"fox" not in listed and b"number" not in listed


def test_an_encrypted_vaults_list_finds_collisions_by_sealed_path(
    encrypted_vault: Vault, tmp_path: Path
) -> None:
    """Lookups by path go through keyed checksums and sealed values, as a plain list's do
    through plain ones: same names, whatever the order jobs arrive in."""
    add_jobs(encrypted_vault, [5, 2], images=1)
    checkout(encrypted_vault, define(tmp_path, template="{prompt:3}.{ext}"))
    add_jobs(encrypted_vault, [1], images=1)
    report = refresh_views(encrypted_vault).views[0]
    assert report.conflicts == 0
    found = files_in(tmp_path / "views" / "all")
    assert sorted(found) == ["fox.png", "fox~job0002_0.png", "fox~job0005_0.png"]
    listed = (encrypted_vault.path / "views" / "all.files").read_bytes()
    assert b"fox" not in listed


def test_an_encrypted_vaults_inline_list_moves_to_a_sealed_table(
    encrypted_vault: Vault, tmp_path: Path
) -> None:
    add_jobs(encrypted_vault, range(3))
    checkout(encrypted_vault, define(tmp_path))
    registry = ViewRegistry(encrypted_vault)
    view = registry.load("all")
    before = {(j, i): r for j, i, r in view.iter_files()}
    # As version 2 kept it: the list inside the sealed view file, no table beside it.
    doc = view.to_doc(inline=True)
    view.release()
    (encrypted_vault.path / "views" / "all.files").unlink()
    state = encrypted_vault.path / "views" / "all.view"
    state.write_bytes(registry._encode("all", doc))
    assert {(j, i): r for j, i, r in registry.load("all").iter_files()} == before
    add_jobs(encrypted_vault, range(3, 4))
    report = refresh_views(encrypted_vault).views[0]
    assert (report.mode, report.added, report.removed) == ("incremental", 2, 0)
    assert registry._decode("all", state.read_bytes())["v"] == STATE_VERSION
    assert b"fox" not in (encrypted_vault.path / "views" / "all.files").read_bytes()
    assert len(files_in(tmp_path / "views" / "all")) == 8


def test_hardlinks_share_the_object(vault: Vault, tmp_path: Path) -> None:
    add_jobs(vault, range(1))
    checkout(vault, define(tmp_path, link=LinkKind.HARDLINK))
    path = tmp_path / "views" / "all" / "fox number 0_job-0000_0.png"
    entry = vault.entry("job-0000")
    assert entry.images[0] is not None
    assert os.path.samefile(path, vault.object_path(entry.images[0]))


def test_embed_metadata_in_copies(vault: Vault, tmp_path: Path) -> None:
    buffer = io.BytesIO()
    Image.new("RGB", (4, 4), "red").save(buffer, "PNG")
    with vault.writer("test") as writer:
        oid = writer.put_media(buffer.getvalue())
        writer.add_job(record_json("job-x", "a quiet harbour at dawn"), [oid])
    checkout(vault, define(tmp_path, link=LinkKind.COPY, embed_metadata=True))
    path = tmp_path / "views" / "all" / "a quiet harbour at dawn_job-x_0.png"
    with Image.open(path) as image:
        assert image.text["Description"] == "a quiet harbour at dawn"
        assert image.text["job_id"] == "job-x"
        assert "--ar 16:9" in image.text["full_command"]
        assert image.getpixel((0, 0)) == (255, 0, 0)


def test_views_are_remembered_and_validated(vault: Vault, tmp_path: Path) -> None:
    add_jobs(vault, range(1))
    checkout(vault, define(tmp_path, name="a"))
    with pytest.raises(UsageError):
        checkout(vault, define(tmp_path, name="b", directory=tmp_path / "views" / "a"))
    with pytest.raises(UsageError):
        checkout(vault, define(tmp_path, name="c", directory=vault.path / "inside"))
    with pytest.raises(UsageError):
        checkout(vault, define(tmp_path, name="d", template="{nope}"))
    views = ViewRegistry(vault).all()
    assert [v.name for v in views] == ["a"]
    assert views[0].file_count() == 2 and len(set(views[0].iter_object_ids())) == 2


def test_an_unreadable_record_keeps_its_files(vault: Vault, tmp_path: Path) -> None:
    add_jobs(vault, range(2))
    checkout(vault, define(tmp_path))
    # The record is packed: its entry's bytes in the pack are overwritten.
    spoil_packed(vault, vault.entry("job-0000").record, lambda d: b"damaged".ljust(len(d), b"\0"))
    # A type filter needs the record itself (the index's summary would render without it).
    grids = ViewFilter.build(types=("grid",))
    report = checkout(vault, define(tmp_path, template="{job_id}_{index}.{ext}", filter=grids))
    assert report.skipped == 2 and any("job-0000" in note for note in report.notes)
    assert sorted(files_in(tmp_path / "views" / "all")) == [
        "fox number 0_job-0000_0.png",
        "fox number 0_job-0000_1.png",
        "job-0001_0.png",
        "job-0001_1.png",
    ]


def test_an_interrupted_checkout_resumes_without_conflicts(
    vault: Vault, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mjvault.views import reconcile

    add_jobs(vault, range(10))
    monkeypatch.setattr(reconcile, "BATCH_JOBS", 2)
    calls: list[int] = []

    def interrupt_after_two(jobs: int) -> None:
        calls.append(jobs)
        if len(calls) == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        checkout(vault, define(tmp_path), progress=interrupt_after_two)
    made = files_in(tmp_path / "views" / "all")
    assert 0 < len(made) < 20
    report = refresh_views(vault).views[0]
    assert report.conflicts == 0 and report.added == 20 - len(made)
    assert len(files_in(tmp_path / "views" / "all")) == 20


def test_changed_image_replaces_the_link_even_if_its_directory_was_removed(
    vault: Vault, tmp_path: Path
) -> None:
    add_jobs(vault, range(1), images=1)
    checkout(vault, define(tmp_path, template="{job_id}/{index}.{ext}"))
    root = tmp_path / "views" / "all"
    (root / "job-0000" / "0.png").unlink()
    (root / "job-0000").rmdir()
    with vault.writer("test") as writer:  # the same job, a new image
        writer.add_job(record_json("job-0000", "fox number 0"), [writer.put_media(b"new image")])
    report = refresh_views(vault).views[0]
    assert report.updated == 1
    assert (root / "job-0000" / "0.png").read_bytes() == b"new image"


def test_real_type_decides_the_extension_and_how_the_file_is_made(
    vault: Vault, tmp_path: Path
) -> None:
    webp = io.BytesIO()
    Image.new("RGB", (4, 4), "blue").save(webp, "WEBP")
    with vault.writer("test") as writer:
        images = [writer.put_media(webp.getvalue()), writer.put_media(b"<html>not an image")]
        writer.add_job(record_json("job-w", "mixed"), images)  # the record says png
        missing = writer.put_media(png_bytes(77))
        writer.add_job(record_json("job-m", "gone"), [missing])
    os.chmod(vault.object_path(missing), 0o644)
    vault.object_path(missing).unlink()
    report = checkout(vault, define(tmp_path, template="{job_id}_{index}.{ext}"))
    found = files_in(tmp_path / "views" / "all")
    assert sorted(found) == ["job-w_0.webp", "job-w_1.png"]
    assert found["job-w_0.webp"].is_symlink()
    # A framed object is not the image itself: it is decoded into a copy, never linked.
    assert not found["job-w_1.png"].is_symlink()
    assert found["job-w_1.png"].read_bytes() == b"<html>not an image"
    # A missing object is reported, and no dangling link is made.
    assert report.skipped == 1 and any("missing" in note for note in report.notes)
    assert refresh_views(vault).views[0].mode == "up-to-date"


def test_check_views_finds_every_kind_of_damage(vault: Vault, tmp_path: Path) -> None:
    from mjvault.views.check import check_views, referenced_objects

    add_jobs(vault, range(3), images=1)
    checkout(vault, define(tmp_path, name="links", template="{job_id}.{ext}"))
    checkout(vault, define(tmp_path, name="copies", template="{job_id}.{ext}", link=LinkKind.COPY))
    assert list(check_views(vault)) == []
    links, copies = tmp_path / "views" / "links", tmp_path / "views" / "copies"
    (links / "job-0000.png").unlink()
    (links / "job-0001.png").unlink()
    (links / "job-0001.png").symlink_to(copies / "job-0001.png")
    (copies / "job-0002.png").write_bytes(b"tampered")
    problems = {(p.view, p.job_id, p.problem) for p in check_views(vault)}
    assert problems == {
        ("links", "job-0000", "missing"),
        ("links", "job-0001", "points elsewhere"),
        ("copies", "job-0002", "differs"),
    }
    assert len(set(referenced_objects(vault))) == 3


def test_a_damaged_view_file_blocks_nothing_else(vault: Vault, tmp_path: Path) -> None:
    add_jobs(vault, range(1), images=1)
    checkout(vault, define(tmp_path, name="a"))
    state = vault.path / "views" / "a.view"
    state.write_bytes(state.read_bytes()[:20])
    registry = ViewRegistry(vault)
    assert "damaged" in registry.summaries()[0]["error"]
    assert checkout(vault, define(tmp_path, name="b")).added == 1
    result = refresh_views(vault)
    assert list(result.errors) == ["a"] and [r.view for r in result.views] == ["b"]
    removed = remove_view(vault, "a")
    assert removed.removed == 0 and "left in place" in removed.notes[0]
    assert (tmp_path / "views" / "a" / "fox number 0_job-0000_0.png").is_symlink()
    assert registry.names() == ["b"]


def test_index_and_records_render_the_same_names(vault: Vault, tmp_path: Path) -> None:
    from mjvault.views import reconcile

    webp = io.BytesIO()
    Image.new("RGB", (4, 4), "blue").save(webp, "WEBP")
    with vault.writer("test") as writer:
        for n, (prompt, params) in enumerate(
            [
                ("Ｆｏｘ in the snow", "--ar 16:9 --v 6.1 --s 250 --style raw"),
                ("猫耳 portrait", "--niji 6 --tile --seed 42 --q .5"),
                ("https://s.mj.run/abc a/b c:d", "--no trees, cars --iw 1.5"),
            ]
        ):
            images = [writer.put_media(webp.getvalue()), writer.put_media(png_bytes(n))]
            command = f"{prompt} {params}"
            record = record_json(f"job-{n}", prompt, full_command=command, username=f"ü{n}")
            writer.add_job(record, images)
    template = "{username}/{date:%Y}/{prompt:20}_{ar}_{version}_{niji}_{style}_{stylize}_{tile}_{seed}_{quality}_{param:no}_{iw}_{type}_{index}.{ext}"
    via_index = checkout(vault, define(tmp_path, name="index", template=template))
    assert reconcile._usable_index(vault, define(tmp_path), Template.parse(template)) is not None
    everything = ViewFilter.build(types=("image",))  # forces the records
    via_records = checkout(
        vault, define(tmp_path, name="records", template=template, filter=everything)
    )
    assert via_index.added == via_records.added == 6
    names = sorted(files_in(tmp_path / "views" / "index"))
    assert "ü1/2023/猫耳 portrait_none_none_6_none_none_true_42_0.5_none_none_grid_0.webp" in names
    assert sorted(files_in(tmp_path / "views" / "index")) == sorted(
        files_in(tmp_path / "views" / "records")
    )


def test_a_view_file_of_state_version_1_is_read_and_rewritten(vault: Vault, tmp_path: Path) -> None:
    add_jobs(vault, range(3))
    checkout(vault, define(tmp_path))
    registry = ViewRegistry(vault)
    view = registry.load("all")
    before = {(j, i): r for j, i, r in view.iter_files()}
    # The file list as version 1 wrote it: one row per file.
    doc = view.to_doc() | {
        "v": 1,
        "files": msgpack.packb([r.pack(j, i) for (j, i), r in before.items()]),
    }
    state = vault.path / "views" / "all.view"
    state.write_bytes(registry._encode("all", doc))
    old = registry.load("all")
    assert {(j, i): r for j, i, r in old.iter_files()} == before
    add_jobs(vault, range(3, 4))
    report = refresh_views(vault).views[0]
    assert (report.mode, report.added, report.removed, report.kept) == ("incremental", 2, 0, 0)
    assert registry._decode("all", state.read_bytes())["v"] == STATE_VERSION
    assert len(files_in(tmp_path / "views" / "all")) == 8


def test_a_file_list_whose_columns_disagree_is_damage(vault: Vault, tmp_path: Path) -> None:
    add_jobs(vault, range(2))
    checkout(vault, define(tmp_path))
    registry = ViewRegistry(vault)
    doc = registry.load("all").to_doc(inline=True)  # version 2: the list in the view file
    columns = msgpack.unpackb(doc["files"])
    columns[1][0] += 1  # a job claims one file more than the list holds
    state = vault.path / "views" / "all.view"
    state.write_bytes(registry._encode("all", doc | {"files": msgpack.packb(columns)}))
    with pytest.raises(IntegrityError, match="damaged file list"):
        list(registry.load("all").iter_files())
