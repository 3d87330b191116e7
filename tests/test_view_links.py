import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pytest

from mjvault.errors import UsageError
from mjvault.views import links
from mjvault.views.links import (
    LinkKind,
    NameTaken,
    parse_link_kind,
    place_bytes,
    place_file,
    points_to,
    prune_empty_dirs,
)


@pytest.fixture
def source(tmp_path: Path) -> Path:
    path = tmp_path / "vault" / "objects" / "ab" / "cdef"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"\x89PNG fake image bytes")
    return path


def _leftover_temps(root: Path) -> list[Path]:
    return [p for p in root.rglob(".mjvault-tmp-*")]


@pytest.mark.parametrize("kind", list(LinkKind))
def test_each_kind_shows_the_source(tmp_path: Path, source: Path, kind: LinkKind) -> None:
    dest = tmp_path / "view" / "2024" / "cat.png"
    used = place_file(source, dest, kind)
    assert dest.read_bytes() == source.read_bytes()
    assert points_to(dest, source, used)
    if kind is LinkKind.SYMLINK:
        assert dest.is_symlink() and not os.path.isabs(os.readlink(dest))
    if kind is LinkKind.HARDLINK:
        assert os.path.samefile(dest, source)
    if kind in (LinkKind.COPY, LinkKind.REFLINK):
        assert not dest.is_symlink() and not os.path.samefile(dest, source)
        assert used in (LinkKind.REFLINK, LinkKind.COPY)
    assert _leftover_temps(tmp_path) == []


def test_relative_symlink_survives_moving_vault_and_view_together(
    tmp_path: Path, source: Path
) -> None:
    dest = tmp_path / "view" / "cat.png"
    place_file(source, dest, LinkKind.SYMLINK)
    moved = tmp_path.parent / (tmp_path.name + "-moved")
    tmp_path.rename(moved)
    try:
        assert (moved / "view" / "cat.png").read_bytes() == b"\x89PNG fake image bytes"
    finally:
        moved.rename(tmp_path)


@pytest.mark.parametrize("kind", list(LinkKind))
def test_never_overwrites_an_existing_file(tmp_path: Path, source: Path, kind: LinkKind) -> None:
    dest = tmp_path / "view" / "cat.png"
    dest.parent.mkdir()
    dest.write_bytes(b"the user's own file")
    with pytest.raises(NameTaken):
        place_file(source, dest, kind)
    assert dest.read_bytes() == b"the user's own file"
    assert _leftover_temps(tmp_path) == []


def test_replace_swaps_atomically(tmp_path: Path, source: Path) -> None:
    other = source.with_name("other")
    other.write_bytes(b"new")
    dest = tmp_path / "view" / "cat.png"
    place_file(source, dest, LinkKind.SYMLINK)
    place_file(other, dest, LinkKind.SYMLINK, replace=True)
    assert dest.read_bytes() == b"new"
    place_bytes(b"decrypted", dest, replace=True)
    assert dest.read_bytes() == b"decrypted" and not dest.is_symlink()
    with pytest.raises(NameTaken):
        place_bytes(b"again", dest)
    assert _leftover_temps(tmp_path) == []


def test_reflink_falls_back_to_copy_where_unsupported(tmp_path: Path, source: Path) -> None:
    # ext4 and tmpfs cannot clone; btrfs and XFS can. Either way the bytes must arrive.
    used = place_file(source, tmp_path / "v" / "x.png", LinkKind.REFLINK)
    assert used in (LinkKind.REFLINK, LinkKind.COPY)
    assert (tmp_path / "v" / "x.png").read_bytes() == source.read_bytes()


def test_prune_stops_at_root(tmp_path: Path) -> None:
    deep = tmp_path / "view" / "a" / "b"
    deep.mkdir(parents=True)
    (tmp_path / "view" / "keep.txt").write_text("x")
    prune_empty_dirs(deep, tmp_path / "view")
    assert not (tmp_path / "view" / "a").exists()
    assert (tmp_path / "view").is_dir()


def test_parse_link_kind() -> None:
    assert parse_link_kind("Symlink") is LinkKind.SYMLINK
    with pytest.raises(UsageError):
        parse_link_kind("junction")


@pytest.mark.skipif(
    not os.environ.get("MJVAULT_REFLINK_DIR"),
    reason="set MJVAULT_REFLINK_DIR to a directory on Btrfs or XFS to test real reflinks",
)
def test_reflink_really_clones_on_a_capable_file_system() -> None:
    import tempfile

    root = Path(tempfile.mkdtemp(dir=os.environ["MJVAULT_REFLINK_DIR"]))
    source = root / "object"
    source.write_bytes(os.urandom(1 << 20))
    assert place_file(source, root / "view" / "x.png", LinkKind.REFLINK) is LinkKind.REFLINK
    assert (root / "view" / "x.png").read_bytes() == source.read_bytes()


@pytest.mark.parametrize("where", ["tmp", "shm"])
def test_copy_new_makes_a_whole_file_atomically_and_never_over_one(
    tmp_path: Path, where: str
) -> None:
    # /dev/shm (tmpfs) takes the nameless-file path (O_TMPFILE + link); the test's own
    # directory may refuse it and take the temp-name path: both must behave alike.
    if where == "shm":
        if not os.path.isdir("/dev/shm"):
            pytest.skip("no /dev/shm")
        base = Path(tempfile.mkdtemp(dir="/dev/shm"))
    else:
        base = tmp_path
    try:
        source = base / "object"
        source.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 40)
        dest = base / "view" / "deep" / "cat.png"
        stat = links.copy_new(os.fspath(source), os.fspath(dest))
        assert dest.read_bytes() == source.read_bytes()
        assert (stat.st_size, stat.st_mtime_ns) == (dest.stat().st_size, dest.stat().st_mtime_ns)
        dest.write_bytes(b"the user's")
        with pytest.raises(links.NameTaken):
            links.copy_new(os.fspath(source), os.fspath(dest))
        assert dest.read_bytes() == b"the user's"
        assert sorted(p.name for p in dest.parent.iterdir()) == ["cat.png"]  # no temp left
    finally:
        if where == "shm":
            shutil.rmtree(base)


def test_copy_new_names_a_nameless_file_through_proc_where_an_empty_path_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Kernels that refuse linkat(AT_EMPTY_PATH) without a capability: the file is linked
    through /proc/self/fd (once took link(), which cannot follow it, and every copy fell
    back to a temp name)."""
    if not os.path.isdir("/dev/shm") or not links._tmpfile_works:
        pytest.skip("needs a tmpfs with O_TMPFILE")
    monkeypatch.setattr(links, "_tmpfile_works", True)
    monkeypatch.setattr(links, "_empty_path_works", False)
    staged: list[Path] = []
    real_create = links._create

    def create(dest: Path, *args: Any, **kwargs: Any) -> None:
        staged.append(dest)
        real_create(dest, *args, **kwargs)

    monkeypatch.setattr(links, "_create", create)
    base = Path(tempfile.mkdtemp(dir="/dev/shm"))
    try:
        (base / "object").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)))
        for n in range(3):
            links.copy_new(os.fspath(base / "object"), os.fspath(base / "view" / f"{n}.png"))
            assert (base / "view" / f"{n}.png").read_bytes() == (base / "object").read_bytes()
        assert staged == [] and links._tmpfile_works
    finally:
        shutil.rmtree(base)


@pytest.mark.parametrize("size", [0, 1, 999, 1000, 10_001])
@pytest.mark.parametrize("stingy", [False, True], ids=["whole", "stops-early"])
def test_copy_new_copies_every_byte_in_chunks_and_after_a_short_answer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, size: int, stingy: bool
) -> None:
    """Counted up to the source's size, chunk by chunk; a file system whose copy_file_range
    answers 0 before the end (overlay, NFS) still gets the rest through sendfile."""
    monkeypatch.setattr(links, "_COPY_CHUNK", 1000)
    copy_range = os.copy_file_range
    if stingy:
        moved = [0]

        def first_half_only(src: int, dst: int, count: int) -> int:
            room = max(0, size // 2 - moved[0])
            done = copy_range(src, dst, min(count, room)) if room else 0
            moved[0] += done
            return done

        monkeypatch.setattr(os, "copy_file_range", first_half_only)
    source = tmp_path / "object"
    source.write_bytes(os.urandom(size))
    dest = tmp_path / "view" / "x.png"
    stat = links.copy_new(os.fspath(source), os.fspath(dest))
    assert dest.read_bytes() == source.read_bytes()
    assert stat.st_size == size
    if stingy and links._tmpfile_works:  # the nameless-file path is the one that counts
        assert moved[0] == size // 2
