"""The files checked-out views show for a job (mjvault/find/views.py), the column of
`search --paths` and the exports: one view, every view merged, a filtered view, and a name
that is no view. Real vaults checked out into real folders."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from mjvault import Vault
from mjvault.find.views import all_view_paths, view_paths
from mjvault.views.filters import ViewFilter
from mjvault.views.links import LinkKind
from mjvault.views.reconcile import checkout
from mjvault.views.registry import ViewDefinition, ViewNotFound
from tests.conftest import png_bytes, record_json


@pytest.fixture
def vault(tmp_path: Path) -> Iterator[Vault]:
    with Vault.init(tmp_path / "vault") as vault:
        with vault.writer("test") as writer:
            for n in range(3):
                # three images each, so their order in the answer is the images' order
                images = [writer.put_media(png_bytes(n * 10 + i, 32)) for i in range(3)]
                prompt = "a red fox" if n else "a grey cat"
                writer.add_job(record_json(f"job-{n}", prompt), images)
        yield vault


def define(tmp_path: Path, name: str, **options: object) -> ViewDefinition:
    fields: dict[str, object] = {
        "name": name,
        "directory": tmp_path / "views" / name,
        "template": "{job_id}/{index}.{ext}",
        "link": LinkKind.SYMLINK,
    } | options
    return ViewDefinition(**fields)  # type: ignore[arg-type]


def test_the_files_of_one_view_by_job_in_image_order(vault: Vault, tmp_path: Path) -> None:
    checkout(vault, define(tmp_path, "all"))
    paths = view_paths(vault, "all")
    assert sorted(paths) == ["job-0", "job-1", "job-2"]
    root = (tmp_path / "views" / "all").resolve()
    for job_id, files in paths.items():
        assert files == [os.path.join(root, job_id, f"{i}.png") for i in range(3)]
        assert all(os.path.isfile(f) for f in files)  # each a link to its image


def test_a_filtered_view_shows_only_its_jobs(vault: Vault, tmp_path: Path) -> None:
    checkout(vault, define(tmp_path, "foxes", filter=ViewFilter.build(search="fox")))
    assert sorted(view_paths(vault, "foxes")) == ["job-1", "job-2"]


def test_every_view_merged(vault: Vault, tmp_path: Path) -> None:
    assert all_view_paths(vault) == {}  # no view yet
    checkout(vault, define(tmp_path, "all"))
    checkout(vault, define(tmp_path, "foxes", filter=ViewFilter.build(search="fox")))
    merged = all_view_paths(vault)
    assert len(merged["job-0"]) == 3  # in "all" only
    assert len(merged["job-1"]) == 6  # in both views
    assert {Path(p).parts[-3] for p in merged["job-1"]} == {"all", "foxes"}


def test_a_name_that_is_no_view(vault: Vault, tmp_path: Path) -> None:
    checkout(vault, define(tmp_path, "all"))
    with pytest.raises(ViewNotFound, match="no view named 'other'"):
        view_paths(vault, "other")
