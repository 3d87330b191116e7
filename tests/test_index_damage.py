"""A damaged index (it is only a cache) is rebuilt by the command that finds it, or reported in
one true line that says how to rebuild it; never "Cannot allocate memory" or a traceback."""

from __future__ import annotations

import struct
from collections.abc import Callable
from pathlib import Path

import pytest

from mjvault import Vault
from mjvault.index.db import Index, IndexDamaged
from tests.conftest import png_bytes, record_json, run_cli, run_cli_process

PAGE = 4096
# LMDB's meta pages (0 and 1): a 16-byte page header, then magic, version, address, map size,
# two 48-byte database records, the last page number and the transaction id.
VERSION_AT = 16 + 4
LAST_PAGE_AT = 16 + 4 + 4 + 8 + 8 + 2 * 48
TXNID_AT = LAST_PAGE_AT + 8
# The main database's record is the second; its root page number is its last field.
MAIN_ROOT_AT = 16 + 4 + 4 + 8 + 8 + 48 + 40


def _both_metas(at: int, value: bytes) -> Callable[[bytearray], None]:
    def damage(data: bytearray) -> None:
        for meta in (0, PAGE):
            data[meta + at : meta + at + len(value)] = value

    return damage


def _main_root(data: bytearray) -> int:
    """The page holding the named tables' records, as the newer meta page says: a page every
    reader reads (a fixed page number may be a free one, which nothing reads)."""
    metas = sorted((struct.unpack_from("<Q", data, m + TXNID_AT)[0], m) for m in (0, PAGE))
    return int(struct.unpack_from("<Q", data, metas[-1][1] + MAIN_ROOT_AT)[0])


def _page(number: int) -> Callable[[bytearray], None]:
    def damage(data: bytearray) -> None:
        data[number * PAGE : (number + 1) * PAGE] = b"\xaa" * PAGE

    return damage


DAMAGE: dict[str, Callable[[bytearray], None]] = {
    # LMDB then maps far beyond the file: ENOMEM, "Cannot allocate memory".
    "a huge last page": _both_metas(LAST_PAGE_AT, struct.pack("<Q", 1 << 40)),
    "a larger last page than the map": _both_metas(LAST_PAGE_AT, struct.pack("<Q", 1 << 62)),
    "an unknown format version": _both_metas(VERSION_AT, struct.pack("<I", 7)),
    "a garbage page": lambda data: _page(_main_root(data))(data),
    "zeroed meta pages": lambda data: data.__setitem__(slice(0, 2 * PAGE), bytes(2 * PAGE)),
}


def indexed_vault(path: Path) -> Path:
    with Vault.init(path) as vault:
        with vault.writer("test") as writer:
            for n in range(30):
                image = writer.put_media(png_bytes(n))
                writer.add_job(record_json(f"job-{n:02}", f"a red fox {n}"), [image])
        assert len(vault.current_index().search(words=["fox"])) == 30
    return path


def damage_index(vault: Path, damage: Callable[[bytearray], None]) -> None:
    data_file = vault / "index" / "data.mdb"
    data = bytearray(data_file.read_bytes())
    damage(data)
    data_file.write_bytes(bytes(data))


@pytest.mark.parametrize("name", sorted(DAMAGE))
def test_commands_rebuild_a_damaged_index_themselves(tmp_path: Path, name: str) -> None:
    vault = indexed_vault(tmp_path / "v")
    damage_index(vault, DAMAGE[name])
    # In a child: LMDB reading a damaged file may crash the process that maps it.
    result = run_cli_process("--vault", str(vault), "search", "fox")
    err = result.stderr.decode()
    assert result.returncode == 0, err
    assert "Traceback" not in err, err
    assert result.stdout.decode().count("job-") == 30
    warnings = [line for line in err.splitlines() if "level=warning" in line]
    assert len(warnings) == 1 and "damaged" in warnings[0] and "rebuilt" in warnings[0], err
    assert run_cli("--vault", str(vault), "verify").returncode == 0


@pytest.mark.parametrize("name", sorted(DAMAGE))
def test_the_damage_is_named_as_such_with_the_way_out(tmp_path: Path, name: str) -> None:
    vault = indexed_vault(tmp_path / "v")
    damage_index(vault, DAMAGE[name])
    with pytest.raises(IndexDamaged) as caught:
        index = Index(vault / "index")
        try:
            index.probe()
        finally:
            index.close()
    message = str(caught.value)
    assert "\n" not in message
    assert str(vault / "index") in message
    assert "only a cache" in message and "mjvault index rebuild" in message, message
