"""The views' applier alone: plans made by hand, carried out on real files, a real file
list and a real vault (the planner's own tests are in tests/test_view_plan.py)."""

from __future__ import annotations

import os
from pathlib import Path

from mjvault import Vault
from mjvault.views.apply import Applier
from mjvault.views.links import LinkKind
from mjvault.views.plan import Plan, Want
from mjvault.views.reconcile import RefreshReport, checkout
from mjvault.views.registry import FileRecord, View, ViewRegistry
from tests.test_views import add_jobs, define


def carry_out(vault: Vault, plan: Plan) -> tuple[RefreshReport, View]:
    registry = ViewRegistry(vault)
    with registry.lock():
        view = registry.load("all")
        report = RefreshReport(view="all", directory=str(view.definition.directory), snapshot=None)
        applier = Applier(vault, registry, view, report, snapshot=vault.head())
        applier.start()
        clean = False
        try:
            applier.execute(plan)
            clean = True
        finally:
            applier.finish(clean)
        registry.save(view)
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
