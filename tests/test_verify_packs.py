"""verify, verify --repair and stats of packed objects (docs/FORMAT.md §10, §12)."""

from __future__ import annotations

from pathlib import Path

from mjvault.index.packmap import PackMap


def test_a_later_pack_map_add_wins(tmp_path: Path) -> None:
    """A copy of an object written to a new pack (a repair, a repack) is the one read, and
    forgetting the old pack keeps it."""
    packmap = PackMap(tmp_path / "map")
    try:
        oid = bytes(range(32))
        old, new = "aa" * 32, "bb" * 32
        packmap.add(old, [(oid, 6, 10)], None)
        packmap.add(new, [(oid, 6, 12)], None)
        found = packmap.locate(oid)
        assert found is not None and (found.pack, found.length) == (new, 12)
        packmap.remove(old, [oid])
        found = packmap.locate(oid)
        assert found is not None and found.pack == new
    finally:
        packmap.close()
