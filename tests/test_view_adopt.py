"""What a killed checkout leaves is settled by the next one: the files it made are adopted
(only when exactly what the view would make), its temp files removed; and the views of an
encrypted vault are owner-only unless asked otherwise."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from mjvault import Vault
from mjvault.views.links import TEMP_PREFIX, LinkKind
from mjvault.views.reconcile import checkout, refresh_views
from mjvault.views.registry import ViewRegistry
from tests.conftest import png_bytes, record_json
from tests.test_views import add_jobs, define, files_in


def forget_state(vault: Vault, name: str = "all") -> None:
    """As if the checkout was killed before it saved its state: files made, none recorded."""
    ViewRegistry(vault).delete(name)


def mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


@pytest.mark.parametrize("kind", ["symlink", "copy", "hardlink"])
def test_a_rerun_adopts_its_own_files_and_keeps_anything_else(
    vault: Vault, tmp_path: Path, kind: str
) -> None:
    add_jobs(vault, range(6))
    checkout(vault, define(tmp_path, link=LinkKind(kind)))
    root = tmp_path / "views" / "all"
    made = files_in(root)
    forget_state(vault)
    # One file that is not what the view makes, though it looks much like it.
    wrong = made["fox number 2_job-0002_1.png"]
    wrong.unlink()
    if kind == "symlink":
        os.symlink(os.readlink(made["fox number 3_job-0003_0.png"]), wrong)  # another image
    else:
        data = bytearray(png_bytes(21))
        data[-1] ^= 1  # same size, one bit off
        wrong.write_bytes(bytes(data))
    wrong_before = wrong.read_bytes()
    # Temp files of the killed run, and a file of the user's that merely looks like one.
    (root / (TEMP_PREFIX + "0123456789abcdef")).write_bytes(png_bytes(1))
    lookalike = root / (TEMP_PREFIX + "my notes")
    lookalike.write_text("mine")

    report = checkout(vault, define(tmp_path, link=LinkKind(kind)))
    assert report.conflict_paths == [str(wrong)]
    assert (report.conflicts, report.added) == (1, 0)
    assert report.adopted == 11
    assert wrong.read_bytes() == wrong_before
    assert not (root / (TEMP_PREFIX + "0123456789abcdef")).exists()
    assert lookalike.read_text() == "mine"
    view = ViewRegistry(vault).load("all")
    assert view.file_count() == 11 and not view.unfinished
    assert refresh_views(vault).views[0].conflicts == 1  # still in the way, still reported
    wrong.unlink()
    assert refresh_views(vault).views[0].added == 1


def test_a_copy_of_an_encrypted_vault_is_adopted_by_its_decrypted_bytes(
    encrypted_vault: Vault, tmp_path: Path
) -> None:
    add_jobs(encrypted_vault, range(3))
    checkout(encrypted_vault, define(tmp_path))
    forget_state(encrypted_vault)
    report = checkout(encrypted_vault, define(tmp_path))
    assert (report.conflicts, report.added) == (0, 0)
    assert report.adopted == 6


def test_a_file_replaced_by_a_killed_run_is_adopted_not_kept_as_yours(
    vault: Vault, tmp_path: Path
) -> None:
    add_jobs(vault, range(2), images=1)
    checkout(vault, define(tmp_path, link=LinkKind.COPY, template="{job_id}.{ext}"))
    path = tmp_path / "views" / "all" / "job-0001.png"
    new_image = png_bytes(4242)
    with vault.writer("test") as writer:  # the same job, a new image
        writer.add_job(record_json("job-0001", "fox number 1"), [writer.put_media(new_image)])
    # The killed refresh had replaced the file, but its state still names the old image.
    path.write_bytes(new_image)
    report = refresh_views(vault).views[0]
    assert (report.kept, report.conflicts, report.updated) == (0, 0, 0)
    assert report.adopted == 1
    assert path.read_bytes() == new_image
    assert refresh_views(vault).views[0].mode == "up-to-date"


def test_state_is_saved_unfinished_before_the_first_file(
    vault: Vault, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mjvault.views import reconcile

    add_jobs(vault, range(3))
    seen: list[bool] = []
    real_run = reconcile._Reconciler.run

    def run_and_look(self: reconcile._Reconciler, changes: object) -> None:
        seen.append(ViewRegistry(vault).load("all").unfinished)
        real_run(self, changes)  # type: ignore[arg-type]

    monkeypatch.setattr(reconcile._Reconciler, "run", run_and_look)
    checkout(vault, define(tmp_path))
    assert seen == [True]
    assert not ViewRegistry(vault).load("all").unfinished


def test_views_of_an_encrypted_vault_are_owner_only(encrypted_vault: Vault, tmp_path: Path) -> None:
    add_jobs(encrypted_vault, range(2))
    template = "{job_id}/{index}.{ext}"
    checkout(encrypted_vault, define(tmp_path, template=template))
    root = tmp_path / "views" / "all"
    assert mode(root) == 0o700 and mode(root / "job-0000") == 0o700
    assert {mode(p) for p in files_in(root).values()} == {0o600}
    # Opting out gives what the umask gives, to the files already there and to new ones.
    mask = os.umask(0o022)
    try:
        checkout(encrypted_vault, define(tmp_path, template=template, private=False))
        add_jobs(encrypted_vault, range(2, 3))
        refresh_views(encrypted_vault)
        assert mode(root / "job-0000") == 0o755 and mode(root / "job-0002") == 0o755
        assert {mode(p) for p in files_in(root).values()} == {0o644}
        assert ViewRegistry(encrypted_vault).load("all").definition.private is False
        # And back.
        checkout(encrypted_vault, define(tmp_path, template=template, private=True))
        assert {mode(p) for p in files_in(root).values()} == {0o600}
        assert mode(root / "job-0002") == 0o700 and mode(root) == 0o700
    finally:
        os.umask(mask)


def test_a_plain_vault_view_keeps_the_usual_modes(vault: Vault, tmp_path: Path) -> None:
    add_jobs(vault, range(1))
    mask = os.umask(0o022)
    try:
        checkout(vault, define(tmp_path, link=LinkKind.COPY, template="{job_id}/{index}.{ext}"))
    finally:
        os.umask(mask)
    root = tmp_path / "views" / "all"
    assert mode(root / "job-0000") == 0o755
    assert {mode(p) for p in files_in(root).values()} == {0o644}
