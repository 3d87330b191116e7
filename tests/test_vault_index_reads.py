"""Reading a vault never writes behind the caller's back: the index is opened as it is
(``open_index``) unless the caller asks for it current (``current_index``), and the vault's
tree is a reader with no write methods."""

from __future__ import annotations

import shutil

from mjvault import Vault
from mjvault.tree import Tree, TreeReader
from tests.conftest import png_bytes, record_json


def _add_jobs(vault: Vault, count: int) -> None:
    with vault.writer("test") as writer:
        for n in range(count):
            image = writer.put_media(png_bytes(n))
            writer.add_job(record_json(f"job-{n}", f"prompt number {n} fox"), [image])


def _lagging(vault: Vault) -> Vault:
    """The vault reopened with its index thrown away: HEAD holds jobs the index does not."""
    _add_jobs(vault, 12)
    vault.close()
    shutil.rmtree(vault.path / "index")
    return Vault.open(vault.path)


def test_open_index_leaves_a_lagging_index_as_it_is(vault: Vault) -> None:
    reopened = _lagging(vault)
    try:
        index = reopened.open_index()
        assert index.indexed_tree() is None and index.job_count() == 0
        assert reopened.open_index() is index
        assert index.indexed_tree() is None  # asked twice, still nothing written
    finally:
        reopened.close()


def test_current_index_brings_it_to_head(vault: Vault) -> None:
    reopened = _lagging(vault)
    try:
        head = reopened.head()
        assert head is not None
        index = reopened.current_index()
        assert index.indexed_tree() == head.tree and index.job_count() == 12
        assert index is reopened.open_index()
    finally:
        reopened.close()


def test_open_index_does_not_wait_for_a_writer(vault: Vault) -> None:
    """A reader beside a writer gets the index as it is; current_index leaves a lagging one
    to the writer that holds the lock rather than failing."""
    reopened = _lagging(vault)
    other = Vault.open(reopened.path)
    try:
        with other.write_lock():
            assert reopened.open_index().job_count() == 0
            assert reopened.current_index().indexed_tree() is None
        assert reopened.current_index().job_count() == 12
    finally:
        other.close()
        reopened.close()


def test_the_vaults_tree_reads_and_has_no_write_methods(vault: Vault) -> None:
    _add_jobs(vault, 3)
    assert isinstance(vault.tree, TreeReader) and not isinstance(vault.tree, Tree)
    assert not any(hasattr(vault.tree, name) for name in ("apply", "store", "empty"))
    head = vault.head()
    assert head is not None
    assert [e.job_id for e in vault.tree.walk(head.tree)] == ["job-0", "job-1", "job-2"]
    assert vault.tree.count(head.tree) == 3
