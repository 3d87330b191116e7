"""The views' applier alone: plans made by hand, carried out on real files, a real file
list and a real vault (the planner's own tests are in tests/test_view_plan.py)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mjvault import Vault
from mjvault.views import reconcile
from mjvault.views.apply import Applier
from mjvault.views.links import LinkKind
from mjvault.views.paths import resolve_collisions
from mjvault.views.plan import Key, Plan, Want
from mjvault.views.reconcile import RefreshReport, checkout, refresh_views
from mjvault.views.registry import FileRecord, View, ViewRegistry
from tests.test_views import add_jobs, define, files_in


def carry_out(vault: Vault, *plans: Plan, save: bool = True) -> tuple[RefreshReport, View]:
    """Each plan a batch, in order, by one applier; ``save=False``: killed before the state
    was saved (the rows it recorded are rolled back, the files it made stay)."""
    registry = ViewRegistry(vault)
    with registry.lock():
        view = registry.load("all")
        report = RefreshReport(view="all", directory=str(view.definition.directory), snapshot=None)
        applier = Applier(vault, registry, view, report, snapshot=vault.head())
        applier.start()
        clean = False
        try:
            for plan in plans:
                applier.execute(plan)
            clean = True
        finally:
            applier.finish(clean)
        if save:
            registry.save(view)
        else:
            view.release()
    return report, view


def records_of(vault: Vault, job_id: str) -> dict[int, FileRecord]:
    view = ViewRegistry(vault).load("all")
    try:
        return dict(view.table.of_jobs({job_id}).get(job_id, {}))
    finally:
        view.release()


def want(vault: Vault, job_id: str, index: int, plain: str) -> Want:
    entry = vault.entry(job_id)
    oid = entry.images[index]
    assert oid is not None
    return Want(plain, oid, vault.job(entry), True)


def test_removals_and_replacements_change_the_files_and_the_list(
    vault: Vault, tmp_path: Path
) -> None:
    add_jobs(vault, range(2))
    checkout(vault, define(tmp_path))
    root = tmp_path / "views" / "all"
    first, second = records_of(vault, "job-0000").values()
    other = want(vault, "job-0001", 0, first.wanted_path)  # another object, the same name
    plan = Plan(
        removals=[(("job-0000", 1), second)],
        replacements=[(("job-0000", 0), first, other)],
    )
    report, _ = carry_out(vault, plan)
    assert (report.removed, report.updated, report.kept) == (1, 1, 0)
    assert not os.path.lexists(root / second.path)
    assert os.path.basename(os.readlink(root / first.path)) == other.oid
    assert records_of(vault, "job-0000") == {0: FileRecord(first.path, other.oid, first.kind)}


def test_a_file_the_user_replaced_is_kept_and_forgotten(vault: Vault, tmp_path: Path) -> None:
    add_jobs(vault, range(1))
    checkout(vault, define(tmp_path))
    root = tmp_path / "views" / "all"
    first, second = records_of(vault, "job-0000").values()
    (root / second.path).unlink()
    (root / second.path).write_bytes(b"mine")
    report, _ = carry_out(vault, Plan(removals=[(("job-0000", 1), second)]))
    assert (report.removed, report.kept) == (0, 1)
    assert report.kept_paths == [str(root / second.path)]
    assert (root / second.path).read_bytes() == b"mine"
    assert list(records_of(vault, "job-0000")) == [0]


def test_new_files_are_made_and_a_user_file_in_the_way_is_a_conflict(
    vault: Vault, tmp_path: Path
) -> None:
    add_jobs(vault, range(1))
    checkout(vault, define(tmp_path))
    root = tmp_path / "views" / "all"
    (root / "taken.png").write_bytes(b"mine")
    free = want(vault, "job-0000", 0, "sub/free.png")
    taken = want(vault, "job-0000", 1, "taken.png")
    plan = Plan(placements={("job-0000", 7): free, ("job-0000", 8): taken})
    report, view = carry_out(vault, plan)
    assert (report.added, report.conflicts) == (1, 1)
    assert report.conflict_paths == [str(root / "taken.png")]
    assert os.path.basename(os.readlink(root / "sub" / "free.png")) == free.oid
    assert (root / "taken.png").read_bytes() == b"mine"
    assert list(view.blocked["job-0000"]) == [8]  # retried at the next refresh
    assert records_of(vault, "job-0000")[7] == FileRecord(
        "sub/free.png", free.oid, LinkKind.SYMLINK
    )


def shows(root: Path, relpath: str, oid: str, kind: LinkKind) -> bool:
    path = root / relpath
    if kind is LinkKind.SYMLINK:
        return os.path.basename(os.readlink(path)) == oid
    return not path.is_symlink() and path.is_file()


def assert_resolved(vault: Vault, root: Path, wants: dict[Key, Want], kind: LinkKind) -> None:
    """Every image at the name the whole group resolves to, and recorded so."""
    expected = resolve_collisions({key: w.plain for key, w in wants.items()})
    for key, w in wants.items():
        record = records_of(vault, key[0])[key[1]]
        assert (record.path, record.oid) == (expected[key], w.oid)
        assert record.plain == (None if expected[key] == w.plain else w.plain)
        assert shows(root, expected[key], w.oid, kind)


def test_a_collision_group_across_two_batches_is_resolved_as_a_whole(
    vault: Vault, tmp_path: Path
) -> None:
    add_jobs(vault, range(3))
    checkout(vault, define(tmp_path))
    root = tmp_path / "views" / "all"
    late = {("job-0002", 7): want(vault, "job-0002", 0, "same.png")}
    # The next batch brings two images of the same name (folded), one sorting before the
    # image that took the name in the batch before: that one moves to its suffixed name.
    early = {
        ("job-0000", 7): want(vault, "job-0000", 0, "Same.png"),
        ("job-0001", 7): want(vault, "job-0001", 0, "same.png"),
    }
    report, view = carry_out(vault, Plan(placements=late), Plan(placements=early))
    assert (report.added, report.updated, report.conflicts) == (3, 1, 0)
    wants = late | early
    assert_resolved(vault, root, wants, LinkKind.SYMLINK)
    assert records_of(vault, "job-0000")[7].path == "Same.png"
    assert not os.path.lexists(root / "same.png")  # the moved image's old name is gone
    assert view.blocked == {}
    # Nothing else moved: the six files of the checkout are where they were.
    assert len(files_in(root)) == 6 + 3


@pytest.mark.parametrize("kind", [LinkKind.SYMLINK, LinkKind.COPY])
def test_files_made_but_not_recorded_are_adopted_by_the_next_run(
    vault: Vault, tmp_path: Path, kind: LinkKind
) -> None:
    add_jobs(vault, range(3))
    checkout(vault, define(tmp_path, link=kind))
    root = tmp_path / "views" / "all"
    wants = {
        ("job-0000", 7): want(vault, "job-0000", 0, "sub/a.png"),
        ("job-0001", 7): want(vault, "job-0001", 0, "sub/A.png"),  # suffixed
        ("job-0002", 7): want(vault, "job-0002", 1, "b.png"),
    }
    report, _ = carry_out(vault, Plan(placements=wants), save=False)
    assert report.added == 3
    assert all(7 not in records_of(vault, f"job-000{n}") for n in range(3))  # lost
    made = {name: path.stat().st_mtime_ns for name, path in files_in(root).items()}
    report, view = carry_out(vault, Plan(placements=wants))
    assert (report.adopted, report.added, report.conflicts) == (3, 0, 0)
    assert view.blocked == {}
    assert_resolved(vault, root, wants, kind)
    # Taken as they are, not made again.
    assert {name: path.stat().st_mtime_ns for name, path in files_in(root).items()} == made


def test_a_refresh_moves_a_member_when_a_job_sorting_before_it_arrives(
    vault: Vault, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every image wants one name, a job per batch: each batch re-resolves the group, and
    whatever order jobs came in, the view ends as the whole group resolved at once."""
    monkeypatch.setattr(reconcile, "BATCH_JOBS", 1)
    add_jobs(vault, range(2, 6), images=1)
    definition = define(tmp_path, template="{prompt:3}.{ext}")
    report = checkout(vault, definition)
    assert (report.added + report.updated, report.conflicts) == (4, 0)
    add_jobs(vault, [0, 1], images=1)  # they sort first: the holder of fox.png moves
    report = refresh_views(vault).views[0]
    assert (report.added, report.updated, report.conflicts, report.kept) == (2, 1, 0, 0)
    root = tmp_path / "views" / "all"
    wants = {(f"job-{n:04d}", 0): want(vault, f"job-{n:04d}", 0, "fox.png") for n in range(6)}
    assert_resolved(vault, root, wants, LinkKind.SYMLINK)
    assert len(files_in(root)) == 6
    assert refresh_views(vault).views[0].mode == "up-to-date"
