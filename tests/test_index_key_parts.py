"""docs/FORMAT.md §9.5: how a term becomes the part of an index key. The examples of its
table, byte for byte, and the keys a real index holds for a username with a NUL and a pair
cut inside a character, read from LMDB as a second implementation would."""

from __future__ import annotations

from pathlib import Path

import lmdb
import pytest

from mjvault import Vault
from mjvault.index.bitmaps import list_key
from mjvault.index.keys import MAX_KEY_PART, key_part
from tests.config_helpers import World, isolate, run_cli
from tests.conftest import png_bytes, record_json

FORMAT = Path(__file__).resolve().parents[1] / "docs" / "FORMAT.md"
ZHE = "ж" * 64  # U+0436, D0 B6 in UTF-8: a word of 128 bytes


def from_hex(text: str) -> bytes:
    return bytes.fromhex(text.replace(" ", ""))


def test_the_examples_of_format_md() -> None:
    assert key_part("ann\x00lee") == from_hex("61 6E 6E 20 6C 65 65") == b"ann lee"
    assert list_key(key_part("ann\x00lee"), 1) == from_hex("61 6E 6E 20 6C 65 65 00 00 01")
    assert list_key(key_part("v=6.1"), 1) == from_hex("76 3D 36 2E 31 00 00 01")
    pair = f"{ZHE} {ZHE}"
    assert len(pair.encode("utf-8")) == 257
    part = key_part(pair)
    assert part == ZHE.encode() + b" " + "ж".encode() * 35 + b"\xd0"  # a lone D0 at the end
    assert len(part) == MAX_KEY_PART == 200
    assert part.decode("utf-8", "replace").endswith("ж\ufffd")
    section = FORMAT.read_text(encoding="utf-8").split("### 9.5 ")[1].split("\n## ")[0]
    assert "`61 6E 6E 20 6C 65 65 00 00 01`" in section and "a lone `D0`" in section


def test_only_nul_is_replaced_and_either_order_gives_the_same_part() -> None:
    text = "a\x00b\x01c\x1fd/e=f:g\x7f" + "é" * 120
    raw = text.encode("utf-8")
    assert key_part(text) == raw[:MAX_KEY_PART].replace(b"\x00", b" ")
    assert key_part(text) == raw.replace(b"\x00", b" ")[:MAX_KEY_PART]
    assert b"\x00" not in key_part(text) and b"\x01c\x1fd/e=f:g\x7f" in key_part(text)


@pytest.fixture
def world(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> World:
    return isolate(monkeypatch, tmp_path)


def test_a_real_index_keys_its_lists_so(capsys: pytest.CaptureFixture[str], world: World) -> None:
    path = world.root / "v"
    vault = Vault.init(path)
    try:
        with vault.writer("test") as writer:
            slot = writer.put_media(png_bytes(1, 600))
            record = record_json("job-nul", f"{ZHE} {ZHE}", username="Ann\x00Lee")
            writer.add_job(record, [slot])
    finally:
        vault.close()
    assert run_cli(capsys, "--vault", str(path), "search", "ж").code == 0  # brings it current
    env = lmdb.open(str(path / "index"), readonly=True, lock=False, max_dbs=64, subdir=True)
    try:
        with env.begin() as txn:
            users = [bytes(k) for k, _ in txn.cursor(db=env.open_db(b"users", txn=txn))]
            pairs = [bytes(k) for k, _ in txn.cursor(db=env.open_db(b"pairs", txn=txn))]
    finally:
        env.close()
    # Case-folded, the NUL a space, then 00 and shard 0 as two bytes.
    assert users == [b"ann lee" + b"\x00" + b"\x00\x00"]
    assert pairs == [key_part(f"{ZHE} {ZHE}") + b"\x00\x00\x00"]
    # A reader splits at the first 00, or drops the last three bytes: the same part.
    (key,) = pairs
    assert key[: key.index(b"\x00")] == key[:-3] and len(key[:-3]) == 200
