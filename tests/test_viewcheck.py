"""verify --views: every file of every checkout view still shows its object; gc keeps them."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mjvault import Vault
from mjvault.integrity.forget import forget_jobs
from mjvault.integrity.gc import gc
from mjvault.integrity.verify import verify
from tests.conftest import png_bytes, record_json, run_cli

registry = pytest.importorskip("mjvault.views.registry")
links = pytest.importorskip("mjvault.views.links")
views = pytest.importorskip("mjvault.views")

TEMPLATE = "{job_id}_{index}.{ext}"


def add_jobs(vault: Vault, numbers: range) -> None:
    with vault.writer("test") as writer:
        for n in numbers:
            slots = [writer.put_media(png_bytes(n * 10 + i, 2000)) for i in range(2)]
            writer.add_job(record_json(f"job-{n}", f"prompt {n}"), slots)


def make_view(vault: Vault, directory: Path, kind: str, name: str) -> None:
    definition = registry.ViewDefinition(
        name=name, directory=directory, template=TEMPLATE, link=links.LinkKind(kind)
    )
    views.checkout(vault, definition)


def view_problems(vault: Vault) -> list[str]:
    report = verify(vault, views=True)
    assert report.views is not None and report.views["available"]
    return [p.message for p in report.problems if p.kind == "view"]


def test_verify_views_finds_dangling_wrong_and_changed_files(vault: Vault, tmp_path: Path) -> None:
    add_jobs(vault, range(4))
    make_view(vault, tmp_path / "links", "symlink", "links")
    make_view(vault, tmp_path / "copies", "copy", "copies")
    make_view(vault, tmp_path / "hard", "hardlink", "hard")
    report = verify(vault, views=True)
    assert report.ok and report.views == report.views | {"views": 3, "files": 24}
    links_dir, copies_dir, hard_dir = tmp_path / "links", tmp_path / "copies", tmp_path / "hard"
    # A dangling link: its object is gone.
    target = vault.entry("job-0").images[0]
    assert target is not None
    os.chmod(vault.object_path(target), 0o644)
    saved = vault.object_path(target).read_bytes()
    vault.object_path(target).unlink()
    # A link pointing elsewhere, a damaged copy, a missing copy, an edited hardlinked file
    # (which, sharing the object's inode, damages the object too: that is why views default
    # to symlinks).
    (links_dir / "job-1_0.png").unlink()
    (links_dir / "job-1_0.png").symlink_to(vault.object_path(vault.entry("job-2").images[0] or ""))
    copy = copies_dir / "job-3_1.png"
    data = bytearray(copy.read_bytes())
    data[50] ^= 1
    copy.write_bytes(bytes(data))
    (copies_dir / "job-2_0.png").unlink()
    (hard_dir / "job-3_0.png").unlink()
    (hard_dir / "job-3_0.png").write_bytes(png_bytes(999, 2000))
    problems = view_problems(vault)
    joined = "\n".join(problems)
    assert "job-0_0.png (image 0) is a dangling link" in joined
    assert "job-1_0.png (image 0) points at another file" in joined
    assert "job-3_1.png (image 1) differs from its object" in joined
    assert "job-2_0.png (image 0) is missing" in joined
    assert "hard/job-3_0.png (image 0) points at another file" in joined
    # The copy of the deleted object is still whole on its own; its hardlink is no longer
    # the object's inode (there is none).
    assert "hard/job-0_0.png (image 0) is a dangling link" in joined
    assert len(problems) == 6, problems
    vault.object_path(target).write_bytes(saved)
    # A restored object makes the symlink whole again, not the hardlink (another inode now).
    assert len(view_problems(vault)) == 5
    cli = run_cli("--vault", str(vault.path), "verify", "--views")
    assert cli.returncode == 3 and b"view" in cli.stderr


def test_gc_keeps_what_views_show_and_forget_job_refreshes_views(
    vault: Vault, tmp_path: Path
) -> None:
    add_jobs(vault, range(3))
    make_view(vault, tmp_path / "links", "symlink", "links")
    victim = vault.entry("job-1")
    report = forget_jobs(vault, ["job-1"])
    assert report.views_refreshed == ["links"]
    assert not (tmp_path / "links" / "job-1_0.png").exists()
    assert (tmp_path / "links" / "job-0_0.png").exists()
    swept = gc(vault, grace_seconds=0)
    assert victim.record in swept.removed_ids
    assert verify(vault, views=True, read_data=True).ok


def test_gc_never_leaves_a_view_link_dangling(vault: Vault, tmp_path: Path) -> None:
    from mjvault.integrity.forget import KeepPolicy, forget_snapshots

    add_jobs(vault, range(3))
    make_view(vault, tmp_path / "links", "symlink", "links")
    shown = vault.entry("job-1").images[0]
    with vault.writer("removal") as writer:  # a writer does not refresh views; sync does
        writer.remove_job("job-1")
    forget_snapshots(vault, policy=KeepPolicy(last=1))
    swept = gc(vault, grace_seconds=0)
    assert shown not in swept.removed_ids and (tmp_path / "links" / "job-1_0.png").exists()
    assert verify(vault, views=True).ok
    views.refresh_views(vault)  # the view lets go of job-1 ...
    assert shown in gc(vault, grace_seconds=0).removed_ids  # ... and gc can take it
    assert verify(vault, views=True, read_data=True).ok


def test_a_damaged_view_file_is_reported_and_stops_gc(vault: Vault, tmp_path: Path) -> None:
    from mjvault.integrity.reachability import UnreadableGraph

    add_jobs(vault, range(2))
    make_view(vault, tmp_path / "one", "symlink", "one")
    make_view(vault, tmp_path / "two", "symlink", "two")
    (vault.path / "views" / "one.view").write_bytes(b"MJVWZ not zstd")
    report = verify(vault, views=True)
    assert report.views is not None and report.views["views"] == 1  # "two" still checked
    assert [p.kind for p in report.problems] == ["view"] and "one" in report.problems[0].message
    with pytest.raises(UnreadableGraph, match="view one"):
        gc(vault, grace_seconds=0)  # its files' objects are unknown: nothing may go


def test_verify_views_notices_state_and_files_that_disagree(vault: Vault, tmp_path: Path) -> None:
    add_jobs(vault, range(4))
    make_view(vault, tmp_path / "links", "symlink", "links")
    views_registry = registry.ViewRegistry(vault)
    view = views_registry.load("links")
    # What a killed checkout leaves: a link made but never recorded, one recorded as "in the
    # way" though it is the view's own, a temp file, and a state still marked unfinished.
    unrecorded, blocked = view.table.get(("job-1", 0)), view.table.get(("job-2", 1))
    assert unrecorded is not None and blocked is not None
    view.table.delete(("job-1", 0))
    view.table.delete(("job-2", 1))
    view.blocked["job-2"] = {1: blocked}
    view.unfinished = True
    view.tree = None  # a killed first checkout's state names no tree yet
    views_registry.save(view)
    temp = tmp_path / "links" / (links.TEMP_PREFIX + "00112233aabbccdd")
    temp.write_bytes(b"half an image")
    problems = view_problems(vault)
    assert len(problems) == 4, problems
    joined = "\n".join(problems)
    assert "interrupted" in joined and str(temp) in joined
    assert f"{tmp_path / 'links' / unrecorded.path} is a link into the vault" in joined
    assert "job-2_1.png (image 1) is exactly the view's image" in joined
    done = run_cli("--vault", str(vault.path), "verify", "--views")
    assert done.returncode == 3 and b"interrupted" in done.stderr
    # The next checkout settles it all.
    report = views.refresh_views(vault).views[0]
    assert (report.adopted, report.conflicts) == (2, 0)
    assert view_problems(vault) == []
