"""A checkout does its per-image and per-job work once, not several times over.

What a checkout of 100k images costs beyond its system calls is Python run per image and per
job (docs/design.md, "Checkout views"); these tests count that work on a real vault and a
real view (never the time it takes, which a shared machine makes meaningless).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from mjvault import Vault
from mjvault.index import db as index_db
from mjvault.views import reconcile, state
from mjvault.views import template as template_module
from mjvault.views.links import LinkKind
from mjvault.views.paths import safe_relpath
from mjvault.views.reconcile import checkout
from mjvault.views.registry import ViewDefinition
from mjvault.views.template import Template
from tests.conftest import png_bytes, record_json

JOBS, IMAGES = 600, 2  # two batches of jobs


def _fill(vault: Vault, jobs: int = JOBS) -> None:
    with vault.writer("test") as writer:
        for n in range(jobs):
            oids = [writer.put_media(png_bytes(n * 10 + i, size=16)) for i in range(IMAGES)]
            writer.add_job(record_json(f"job-{n:04d}", f"fox number {n}"), oids)


def _counting(monkeypatch: pytest.MonkeyPatch, owner: object, name: str) -> list[int]:
    calls = [0]
    real: Callable[..., object] = getattr(owner, name)

    def counted(*args: object, **kwargs: object) -> object:
        calls[0] += 1
        return real(*args, **kwargs)

    monkeypatch.setattr(owner, name, counted)
    return calls


def _definition(tmp_path: Path) -> ViewDefinition:
    return ViewDefinition(
        "all",
        tmp_path / "view",
        "{date:%Y/%m}/{prompt:20}_{job_id}_{index}.{ext}",
        LinkKind.SYMLINK,
    )


def test_a_checkout_works_out_each_key_once(
    vault: Vault, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each image's path key once (asked of the list, then recorded), each job's key once
    (seen, its files, its rows): before, twice and three times."""
    _fill(vault)
    vault.current_index()  # up to date before counting: the index is not the checkout
    path_keys = _counting(monkeypatch, state, "path_key")
    job_keys = _counting(monkeypatch, state, "job_key")
    report = checkout(vault, _definition(tmp_path))
    assert report.added == JOBS * IMAGES
    assert path_keys[0] == JOBS * IMAGES
    assert job_keys[0] == JOBS


def test_a_checkout_lets_go_of_index_pages_less_often(
    vault: Vault, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each release costs the next lookups their page faults: a checkout releases after a
    hundred-odd summaries (a few MB mapped), not after every 16."""
    _fill(vault)
    vault.current_index()
    releases = _counting(monkeypatch, index_db._MappedPages, "release")
    checkout(vault, _definition(tmp_path))
    assert 0 < releases[0] <= JOBS // 32


def test_jobs_named_from_the_index_and_from_records_collide_as_before(
    vault: Vault, tmp_path: Path
) -> None:
    """A batch mixing jobs whose kinds the index knows with jobs that need their record (a
    framed object) still tells colliding names apart in job order, as one pass would."""
    with vault.writer("test") as writer:
        for n in (5, 2, 7, 1):
            media = png_bytes(n, size=16) if n % 2 else b"<html>not an image %d" % n
            writer.add_job(record_json(f"job-{n:04d}", "fox"), [writer.put_media(media)])
    definition = ViewDefinition("all", tmp_path / "view", "{prompt:3}.{ext}", LinkKind.SYMLINK)
    report = checkout(vault, definition)
    assert (report.added, report.conflicts) == (4, 0)
    names = sorted(p.name for p in (tmp_path / "view").iterdir())
    assert names == ["fox.png", "fox~job0002_0.png", "fox~job0005_0.png", "fox~job0007_0.png"]
    # job-0001 sorts first and takes the plain name; job-0002's framed object is a copy.
    assert (tmp_path / "view" / "fox.png").read_bytes() == png_bytes(1, size=16)
    assert not (tmp_path / "view" / "fox~job0002_0.png").is_symlink()


def test_a_checkout_names_each_job_once_and_its_images_by_concatenation(
    vault: Vault, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where the index cannot change what safe_relpath does (a long ASCII file name), a job's
    images are named by one split per job and a concatenation each: no safe_relpath pass
    per image (before: one per image). The names are those safe_relpath gives."""
    _fill(vault)
    vault.current_index()
    splits = _counting(monkeypatch, Template, "index_split")
    passes = _counting(monkeypatch, reconcile, "safe_relpath")
    definition = _definition(tmp_path)
    report = checkout(vault, definition)
    assert report.added == JOBS * IMAGES
    assert (splits[0], passes[0]) == (JOBS, 0)
    template = Template.parse(definition.template)
    for n in (0, JOBS - 1):
        job = vault.job(vault.entry(f"job-{n:04d}"))
        for index in range(IMAGES):
            relpath = safe_relpath(template.render(job, index, "png"))
            assert (tmp_path / "view" / relpath).is_symlink()


def test_a_day_only_date_is_rendered_once_per_day(
    vault: Vault, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """{date:%Y/%m} changes once a month: its text is worked out once per (format, day), not
    once per job (before: once per job). The jobs here share one day."""
    _fill(vault)
    vault.current_index()
    monkeypatch.setattr(template_module, "_DAYS", {})
    real = template_module._UNSAFE_IN_DATE
    calls = [0]

    class Counted:
        def sub(self, replacement: str, text: str) -> str:
            calls[0] += 1
            return real.sub(replacement, text)

    monkeypatch.setattr(template_module, "_UNSAFE_IN_DATE", Counted())
    report = checkout(vault, _definition(tmp_path))
    assert report.added == JOBS * IMAGES
    assert calls[0] == 1


def test_a_first_checkout_reads_the_index_in_order_and_names_as_the_tree_walk_does(
    vault: Vault, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A first checkout takes its jobs and their summaries from one ordered read of the index
    (no tree walk, no lookup per job); the view is the one the walk makes, colliding names
    across many batches included."""
    with vault.writer("test") as writer:
        for n in range(60):
            oids = [writer.put_media(png_bytes(n * 10 + i, size=16)) for i in range(2)]
            writer.add_job(record_json(f"job-{n:04d}", "fox" if n % 3 else "Fox"), oids)
    vault.current_index()
    monkeypatch.setattr(reconcile, "BATCH_JOBS", 7)  # collision groups span batches
    views: list[dict[str, str]] = []
    for name, in_order in (("ordered", True), ("walked", False)):
        if not in_order:
            monkeypatch.setattr(reconcile, "_in_index_order", lambda index, tree: None)
        walks = _counting(monkeypatch, Vault, "entries")
        lookups = _counting(monkeypatch, index_db.Index, "get_many")
        directory = tmp_path / name
        definition = ViewDefinition(name, directory, "{prompt:3}.{ext}", LinkKind.SYMLINK)
        report = checkout(vault, definition)
        assert (report.added + report.updated, report.conflicts) == (120, 0)
        assert (walks[0] == 0, lookups[0] == 0) == (in_order, in_order)
        views.append(
            {os.fspath(p.relative_to(directory)): os.readlink(p) for p in directory.rglob("*")}
        )
    assert views[0] == views[1]
    assert len(views[0]) == 120


def test_a_first_checkout_reads_the_index_only_while_it_is_the_trees(
    vault: Vault, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A sync keeps the index current while a checkout reads it. If its next checkpoint lands
    between the checkout's look at the index's tree and its read of the summaries, the read
    must not give the view a job of the later tree while the view records the earlier one:
    the tree is checked in the read's own transaction, and the checkout walks the tree."""
    with vault.writer("test") as writer:
        for n in range(5):
            writer.add_job(record_json(f"job-{n:04d}", "fox"), [writer.put_media(png_bytes(n))])
    vault.current_index()
    first = vault.head()
    assert first is not None
    real = index_db.Index.iter_summaries

    def after_a_checkpoint(self: index_db.Index, **options: object) -> object:
        if options.get("release_every") == reconcile.SUMMARIES_IN_ORDER_PER_RELEASE:
            # The checkout's ordered read: a sync's checkpoint lands just before it.
            with Vault.open(vault.path) as other, other.writer("sync") as writer:
                writer.add_job(record_json("job-9999", "late"), [writer.put_media(png_bytes(99))])
            index_db.Index.iter_summaries = real  # type: ignore[method-assign]
        return real(self, **options)  # type: ignore[arg-type]

    monkeypatch.setattr(index_db.Index, "iter_summaries", after_a_checkpoint)
    definition = ViewDefinition(
        "v", tmp_path / "v", "{job_id}_{index}.{ext}", LinkKind.SYMLINK, snapshot=first.id
    )
    checkout(vault, definition)
    made = sorted(p.name.split("_")[0] for p in (tmp_path / "v").rglob("*") if p.is_symlink())
    assert made == [f"job-{n:04d}" for n in range(5)]
