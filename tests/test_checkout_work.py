"""A checkout does its per-image and per-job work once, not several times over.

What a checkout of 100k images costs beyond its system calls is Python run per image and per
job (docs/design.md, "Checkout views"); these tests count that work on a real vault and a
real view (never the time it takes, which a shared machine makes meaningless).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from mjvault import Vault
from mjvault.index import db as index_db
from mjvault.views import state
from mjvault.views.links import LinkKind
from mjvault.views.reconcile import checkout
from mjvault.views.registry import ViewDefinition
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
    vault.index  # noqa: B018 - up to date before counting: the index is not the checkout
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
    vault.index  # noqa: B018
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
