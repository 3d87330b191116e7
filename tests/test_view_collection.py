"""A view that follows a collection: which jobs change when the collection does, worked out
from the two chunk lists (a property over any two sets), and the view file's version."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mjvault import Vault, collections
from mjvault.views.filters import ViewFilter
from mjvault.views.links import LinkKind
from mjvault.views.reconcile import _member_changes
from mjvault.views.registry import COLLECTION_VERSION, STATE_VERSION, View, ViewDefinition

IDS = st.sets(st.integers(0, 400).map(lambda n: f"job-{n:04d}"), max_size=120)


@pytest.fixture(scope="module")
def vault(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Vault]:
    opened = Vault.init(tmp_path_factory.mktemp("view-collection") / "vault")
    yield opened
    opened.close()


def _chunks(vault: Vault, ids: set[str]) -> list[str]:
    batch = vault.store.batch()
    _, chunks = collections.write_members(batch, sorted(ids))
    batch.flush()
    return list(chunks)


@settings(max_examples=60, deadline=None)
@given(old=IDS, new=IDS, boundary=st.sampled_from([16, 1 << 13, 1 << 15]))
def test_the_jobs_a_collection_change_touches_are_its_symmetric_difference(
    vault: Vault, old: set[str], new: set[str], boundary: int
) -> None:
    # Boundaries far more often than 1 in 4096, so the two lists share some chunks and differ
    # in others: the shared ones are skipped, and must not change the answer.
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(collections, "BOUNDARY_BELOW", boundary)
        before, after = _chunks(vault, old), _chunks(vault, new)
    assert list(_member_changes(vault, before, after)) == sorted(old ^ new)
    assert list(_member_changes(vault, None, after)) == sorted(new)
    assert list(_member_changes(vault, before, [])) == sorted(old)


def test_only_a_collection_view_is_written_as_version_4(tmp_path: Path) -> None:
    def view(filter_: ViewFilter) -> View:
        return View(
            ViewDefinition("v", tmp_path / "v", "{job_id}_{index}.{ext}", LinkKind.SYMLINK, filter_)
        )

    plain = view(ViewFilter.build(search="cat"))
    assert plain.to_doc(inline=False)["v"] == STATE_VERSION
    follows = view(ViewFilter(collection="picks"))
    doc = follows.to_doc(inline=False)
    assert doc["v"] == COLLECTION_VERSION == 4
    assert View.from_doc(doc).definition.filter.collection == "picks"
    # An unbound collection filter never selects by accident.
    with pytest.raises(RuntimeError):
        ViewFilter(collection="picks").matches(None)  # type: ignore[arg-type]


@pytest.mark.parametrize("encrypted", [False, True])
def test_a_view_of_a_selection_shows_its_collection_and_follows_it(
    tmp_path: Path, encrypted: bool
) -> None:
    from mjvault.serve.batch import Selection, make_selection_view
    from mjvault.views import refresh_views
    from tests.conftest import CHEAP_KDF, PASSPHRASE, png_bytes, record_json

    options = {"encrypt": True, "passphrase": PASSPHRASE, "kdf": CHEAP_KDF} if encrypted else {}
    vault = Vault.init(tmp_path / "vault", **options)  # type: ignore[arg-type]
    try:
        with vault.writer("test", thumbnails=False) as writer:
            for n in range(6):
                writer.add_job(record_json(f"job-{n}"), [writer.put_media(png_bytes(n))])
        folder = tmp_path / "views"
        made = make_selection_view(vault, "picks", Selection(ids=("job-1", "job-4")), folder)
        directory = folder / "picks"
        assert made["directory"] == str(directory.resolve())

        def shown() -> set[str]:
            return {p.name.split("_")[-2] for p in directory.rglob("*") if p.is_file()}

        assert shown() == {"job-1", "job-4"}
        if encrypted:  # copies (a view of an encrypted vault), its definition sealed
            assert all(not p.is_symlink() for p in directory.rglob("*"))
            for path in (vault.path / "views").iterdir():
                assert b"picks" not in path.read_bytes() and b"job-1" not in path.read_bytes()
        collections.change(vault, "picks", add=["job-2"], remove=["job-1"])
        report = refresh_views(vault)
        assert not report.errors and report.views[0].mode == "incremental"
        assert (report.views[0].added, report.views[0].removed) == (1, 1)
        assert shown() == {"job-2", "job-4"}
        collections.delete(vault, "picks")  # gone from the snapshot: the view shows nothing
        assert refresh_views(vault).views[0].removed == 2
        assert shown() == set()
    finally:
        vault.close()
