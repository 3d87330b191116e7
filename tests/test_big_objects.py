"""Large objects stream between a vault and a remote: never whole in memory, checked on the way.

The size at which an object streams is lowered here (:data:`SMALL_BIG`) so the round trips
stay fast; one test sends a real ~300 MB object in child processes and measures their memory.
On moto a multipart upload needs parts of at least 5 MiB, so objects sent there are ~12 MB.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import blake3
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mjvault import Vault
from mjvault.errors import CorruptObject
from mjvault.remotes import bigobjects, folder, obstore_backend
from mjvault.remotes.clone import clone
from mjvault.remotes.config import RemoteSpec, normalise_url
from mjvault.remotes.push import push
from mjvault.remotes.remote import object_key
from mjvault.remotes.session import connect
from mjvault.remotes.verify import verify_remote
from mjvault.store.codec import frame_plain
from mjvault.store.crypto import VaultKeys
from mjvault.store.streams import ObjectCheck, checked_pieces
from mjvault.testing.objectstore import MotoServer
from tests.conftest import CHEAP_KDF, PASSPHRASE, record_json
from tests.peak_rss import run_measured

SMALL_BIG = 256 * 1024
MOTO_SIZE = 12 * 1024 * 1024
KEYS = VaultKeys(b"k" * 32)
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(autouse=True)
def small_thresholds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bigobjects, "BIG_OBJECT_BYTES", SMALL_BIG)
    # moto refuses parts under 5 MiB (but the last).
    monkeypatch.setattr(obstore_backend, "MULTIPART_THRESHOLD", 6 * 1024 * 1024)
    monkeypatch.setattr(obstore_backend, "PART_SIZE", 5 * 1024 * 1024)
    monkeypatch.setattr(folder, "RESUMABLE_BYTES", 1024 * 1024)


def media(size: int, seed: int = 0) -> bytes:
    """A PNG-headed blob of ``size`` bytes (a plain vault stores it raw)."""
    return PNG + (blake3.blake3(str(seed).encode()).digest(length=size - len(PNG)))


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({0, len(data), *(c % (len(data) + 1) for c in cuts)})
    return [data[a:b] for a, b in zip(points, points[1:], strict=False)]


# -- the streaming primitives against their one-shot forms ---------------------------------


@settings(max_examples=60, deadline=None)
@given(st.binary(max_size=3000), st.lists(st.integers(0, 4000), max_size=8))
def test_streaming_seal_is_the_one_shot_seal(plaintext: bytes, cuts: list[int]) -> None:
    object_id = blake3.blake3(plaintext, key=KEYS.naming_key).hexdigest()
    nonce = b"n" * 12
    sealer = KEYS.sealer(object_id, nonce=nonce)
    streamed = sealer.header + b"".join(sealer.update(p) for p in split(plaintext, cuts))
    streamed += sealer.finish()
    assert streamed == KEYS.seal(object_id, plaintext, compress=False, nonce=nonce)


@settings(max_examples=60, deadline=None)
@given(
    st.binary(max_size=3000),
    st.lists(st.integers(0, 4000), max_size=8),
    st.sampled_from(["sealed", "sealed-zstd", "raw", "framed", "framed-zstd"]),
)
def test_streaming_open_is_the_one_shot_open(content: bytes, cuts: list[int], framing: str) -> None:
    keys = KEYS if framing.startswith("sealed") else None
    zstd = framing.endswith("zstd")
    if framing == "raw":
        content = PNG + content
        data = content
    elif keys is not None:
        object_id = blake3.blake3(content, key=KEYS.naming_key).hexdigest()
        data = KEYS.seal(object_id, content, compress=zstd)
    else:
        data = frame_plain(content, compress=zstd)
    object_id = (
        blake3.blake3(content, key=KEYS.naming_key) if keys else blake3.blake3(content)
    ).hexdigest()
    check = ObjectCheck(object_id, keys)
    assert b"".join(checked_pieces(iter(split(data, cuts)), check, plaintext=True)) == content
    assert b"".join(checked_pieces(iter(split(data, cuts)), ObjectCheck(object_id, keys))) == data


@settings(max_examples=40, deadline=None)
@given(st.binary(min_size=40, max_size=2000), st.integers(0, 10_000), st.integers(1, 255))
def test_a_damaged_byte_is_caught_before_the_last_piece(
    content: bytes, where: int, flip: int
) -> None:
    object_id = blake3.blake3(content, key=KEYS.naming_key).hexdigest()
    data = bytearray(KEYS.seal(object_id, content, compress=False))
    data[where % len(data)] ^= flip
    pieces = split(bytes(data), [len(data) // 3, 2 * len(data) // 3])
    given_out: list[bytes] = []
    with pytest.raises(CorruptObject):
        for piece in checked_pieces(iter(pieces), ObjectCheck(object_id, KEYS)):
            given_out.append(piece)
    assert len(b"".join(given_out)) < len(data)  # never the whole file


def test_an_encrypted_vault_seals_a_stream_as_it_seals_bytes(tmp_path: Path) -> None:
    vault = Vault.init(tmp_path / "v", encrypt=True, passphrase=PASSPHRASE, kdf=CHEAP_KDF)
    data = media(3 * 1024 * 1024 + 5)
    batch = vault.store.batch()
    object_id, size, new = batch.put_media_stream(split(data, [1, 1000, 2_000_000]))
    batch.flush()
    assert (size, new) == (len(data), True)
    stored = vault.store.path(object_id).read_bytes()
    keys = vault.store.keys
    assert keys is not None
    nonce = stored[6:18]
    assert stored == keys.seal(object_id, data, compress=False, nonce=nonce)
    assert vault.store.read(object_id) == data
    assert os.listdir(vault.store.tmp_dir) == []
    vault.close()


def test_parts_stay_under_the_s3_part_limit() -> None:
    mib = 1024 * 1024
    assert obstore_backend.part_size(2048 * mib) == obstore_backend.PART_SIZE
    for size in (70 * 1024 * mib, 1024 * 1024 * mib, 5 * 1024 * 1024 * mib):
        part = obstore_backend.part_size(size)
        assert part % mib == 0
        assert -(-size // part) <= 10_000


# -- round trips --------------------------------------------------------------------------

PAIRINGS = ["plain", "encrypted-vault", "encrypting-remote"]


@pytest.fixture(scope="module")
def moto_server() -> Iterator[MotoServer]:
    from tests.conftest import S3_ENV

    with pytest.MonkeyPatch.context() as patch:
        for key, value in S3_ENV.items():
            patch.setenv(key, value)
        with MotoServer() as server:
            yield server


def make_vault(root: Path, pairing: str, blobs: list[bytes]) -> tuple[Vault, list[str]]:
    if pairing == "encrypted-vault":
        vault = Vault.init(root, encrypt=True, passphrase=PASSPHRASE, kdf=CHEAP_KDF)
    else:
        vault = Vault.init(root)
    with vault.writer("test") as writer:
        ids = [writer.put_media_stream(iter(split(blob, [len(blob) // 2]))) for blob in blobs]
        writer.add_job(record_json("job-1"), ids)
    return vault, ids


def spec_for(where: str, tmp_path: Path, pairing: str, moto: MotoServer | None) -> RemoteSpec:
    encrypt = pairing == "encrypting-remote"
    if where == "folder":
        return RemoteSpec("drive", normalise_url(str(tmp_path / "drive")), encrypt=encrypt)
    assert moto is not None
    return moto.spec("drive", encrypt=encrypt)


def held_media(vault: Vault) -> set[bytes]:
    return {
        vault.store.read(i)
        for i in vault.store.iter_loose_ids()
        if vault.store.stored_size(i) > 4096
    }


def count_streams(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    counts = {"up": 0, "down": 0}
    upload, finish = bigobjects.upload_big, bigobjects.Spool.finish

    def counted_upload(*args: Any, **kwargs: Any) -> int:
        counts["up"] += 1
        return upload(*args, **kwargs)

    def counted_finish(self: bigobjects.Spool) -> bigobjects.Spooled:
        counts["down"] += 1
        return finish(self)

    monkeypatch.setattr(bigobjects, "upload_big", counted_upload)
    monkeypatch.setattr(bigobjects.Spool, "finish", counted_finish)
    return counts


@pytest.mark.parametrize("where", ["folder", "moto"])
@pytest.mark.parametrize("pairing", PAIRINGS)
def test_big_objects_round_trip_through_push_and_clone(
    tmp_path: Path, request: pytest.FixtureRequest, where: str, pairing: str
) -> None:
    moto = request.getfixturevalue("moto_server") if where == "moto" else None
    streamed = count_streams(request.getfixturevalue("monkeypatch"))
    size = MOTO_SIZE if where == "moto" else 3 * SMALL_BIG
    blobs = [media(size, 1), media(SMALL_BIG // 2, 2), media(size + 7, 3)]
    vault, ids = make_vault(tmp_path / "vault", pairing, blobs)
    spec = spec_for(where, tmp_path, pairing, moto)
    with connect(vault, spec, passphrase=PASSPHRASE, create=True, kdf=CHEAP_KDF) as link:
        report = push(vault, link)
        assert report.ok, report.problems
        checked = verify_remote(link, read_data=True)
        assert checked.ok, checked.problems
        assert checked.bytes_read >= 2 * size
    copy, pulled = clone(spec, tmp_path / "copy", passphrase=PASSPHRASE)
    assert pulled.ok, pulled.problems
    # Two big objects streamed up, checked twice by verify and once by clone; the small
    # one went whole.
    assert streamed == {"up": 2, "down": 4}
    assert held_media(copy) == set(blobs)
    assert copy.refs.head() == vault.refs.head()
    if pairing != "encrypting-remote":  # the same media files, byte for byte
        for object_id in ids:
            assert (
                copy.store.path(object_id).read_bytes() == vault.store.path(object_id).read_bytes()
            )
    assert os.listdir(copy.store.tmp_dir) == []
    copy.close()
    vault.close()


def test_a_cloned_encrypting_remote_stores_media_as_a_plain_vault_does(tmp_path: Path) -> None:
    """Raw when it is media, framed otherwise: as the vault that pushed it."""
    blobs = [media(3 * SMALL_BIG, 1), b"not media " * (SMALL_BIG // 5)]
    vault, ids = make_vault(tmp_path / "vault", "encrypting-remote", blobs)
    spec = spec_for("folder", tmp_path, "encrypting-remote", None)
    with connect(vault, spec, passphrase=PASSPHRASE, create=True, kdf=CHEAP_KDF) as link:
        assert push(vault, link).ok
    copy, pulled = clone(spec, tmp_path / "copy", passphrase=PASSPHRASE)
    assert pulled.ok, pulled.problems
    for object_id in ids:
        assert copy.store.path(object_id).read_bytes() == vault.store.path(object_id).read_bytes()
    copy.close()
    vault.close()


# -- damage -------------------------------------------------------------------------------


def damage(path: Path, at: int) -> None:
    os.chmod(path, 0o600)
    with open(path, "r+b") as handle:
        handle.seek(at)
        byte = handle.read(1)
        handle.seek(at)
        handle.write(bytes((byte[0] ^ 0x55,)))


@pytest.mark.parametrize("where", ["folder", "moto"])
@pytest.mark.parametrize("pairing", PAIRINGS)
def test_a_damaged_big_object_is_not_spread_by_push(
    tmp_path: Path, request: pytest.FixtureRequest, where: str, pairing: str
) -> None:
    moto = request.getfixturevalue("moto_server") if where == "moto" else None
    size = MOTO_SIZE if where == "moto" else 3 * SMALL_BIG
    vault, ids = make_vault(tmp_path / "vault", pairing, [media(size, 4)])
    spec = spec_for(where, tmp_path, pairing, moto)
    with connect(vault, spec, passphrase=PASSPHRASE, create=True, kdf=CHEAP_KDF) as link:
        if pairing == "encrypting-remote":  # named for the remote while intact
            link.idmap.add([(ids[0], link.remote.name_of(vault.store.read(ids[0])))])  # type: ignore[union-attr]
        damage(vault.store.path(ids[0]), size - 100)  # in the last part
        report = push(vault, link)
        assert not report.ok
        assert any(ids[0][:16] in p for p in report.problems)
        remote_ids = link.remote.object_ids()
        assert report.snapshots_sent == 0
        remote_id = ids[0] if link.idmap is None else link.idmap.remote_of(ids[0])
        assert remote_id not in remote_ids
        assert not link.backend.exists(object_key(str(remote_id)))
    if where == "folder":
        assert not any((tmp_path / "drive" / "tmp").iterdir())
    else:
        assert no_multipart_uploads(moto, spec)
    vault.close()


def no_multipart_uploads(moto: MotoServer | None, spec: RemoteSpec) -> bool:
    import boto3

    assert moto is not None
    bucket = spec.url.split("/")[2]
    client = boto3.client("s3", endpoint_url=moto.endpoint)
    return not client.list_multipart_uploads(Bucket=bucket).get("Uploads")


@pytest.mark.parametrize("where", ["folder", "moto"])
@pytest.mark.parametrize("pairing", PAIRINGS)
def test_a_damaged_big_object_is_caught_while_it_streams_on_pull(
    tmp_path: Path, request: pytest.FixtureRequest, where: str, pairing: str
) -> None:
    moto = request.getfixturevalue("moto_server") if where == "moto" else None
    size = 3 * SMALL_BIG
    vault, ids = make_vault(tmp_path / "vault", pairing, [media(size, 5)])
    spec = spec_for(where, tmp_path, pairing, moto)
    with connect(vault, spec, passphrase=PASSPHRASE, create=True, kdf=CHEAP_KDF) as link:
        assert push(vault, link).ok
        remote_id = ids[0] if link.idmap is None else str(link.idmap.remote_of(ids[0]))
        key = object_key(remote_id)
        good = link.backend.get(key)
        bad = bytearray(good)
        bad[len(bad) // 2] ^= 1
        link.backend.put(key, bytes(bad))
        checked = verify_remote(link, read_data=True)
        assert any(p.object_id == remote_id for p in checked.problems)
    copy, pulled = clone(spec, tmp_path / "copy", passphrase=PASSPHRASE)
    assert not pulled.ok
    assert any(remote_id[:16] in p for p in pulled.problems)
    assert held_media(copy) == set()
    assert os.listdir(copy.store.tmp_dir) == []
    copy.close()
    vault.close()


# -- kill -9 mid-upload -------------------------------------------------------------------

SLOW_PUSH = """
import sys, time
from pathlib import Path
from mjvault import Vault
from mjvault.remotes import bigobjects, folder, obstore_backend, push as push_module
from mjvault.remotes.config import RemoteSpec
from mjvault.remotes.session import connect
from mjvault.store import streams

bigobjects.BIG_OBJECT_BYTES = 256 * 1024
obstore_backend.MULTIPART_THRESHOLD = 6 * 1024 * 1024
obstore_backend.PART_SIZE = 5 * 1024 * 1024
folder.RESUMABLE_BYTES = 1024 * 1024
pieces = streams.file_pieces

def slow(fd, size=streams.PIECE):
    for n, piece in enumerate(pieces(fd, size)):
        if n == 7:
            print("halfway", flush=True)
            time.sleep(600)
        yield piece

streams.file_pieces = slow
with Vault.open(Path(sys.argv[1])) as vault:
    spec = RemoteSpec("drive", sys.argv[2])
    with connect(vault, spec) as link:
        push_module.push(vault, link, threads=1)
"""


def kill_push_halfway(vault: Vault, spec: RemoteSpec, moto: MotoServer | None) -> None:
    with connect(vault, spec, create=True):
        pass
    root = Path(__file__).resolve().parents[1]
    child = subprocess.Popen(
        [sys.executable, "-c", SLOW_PUSH, str(vault.path), spec.url],
        cwd=root,
        stdout=subprocess.PIPE,
        env={**os.environ, "AWS_ENDPOINT_URL": moto.endpoint if moto else ""},
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline() == b"halfway\n"
        time.sleep(0.5)  # the first parts are in flight or in
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()


def finish_push(vault: Vault, spec: RemoteSpec, tmp_path: Path, blobs: list[bytes]) -> None:
    with connect(vault, spec) as link:
        report = push(vault, link)
        assert report.ok, report.problems
        assert verify_remote(link, read_data=True).ok
    copy, pulled = clone(spec, tmp_path / "copy")
    assert pulled.ok and held_media(copy) == set(blobs)
    copy.close()


def test_push_killed_mid_upload_to_moto_finishes_when_run_again(
    tmp_path: Path, moto_server: MotoServer
) -> None:
    """obstore keeps a multipart upload's id to itself: the next push sends every part again
    (the parts of the killed upload stay in the bucket until a lifecycle rule aborts them)."""
    blobs = [media(MOTO_SIZE, 6)]
    vault, ids = make_vault(tmp_path / "vault", "plain", blobs)
    spec = spec_for("moto", tmp_path, "plain", moto_server)
    kill_push_halfway(vault, spec, moto_server)
    with connect(vault, spec) as link:
        assert not link.backend.exists(object_key(ids[0]))  # nothing half-published
    assert not no_multipart_uploads(moto_server, spec)  # what a lifecycle rule must clean up
    finish_push(vault, spec, tmp_path, blobs)
    vault.close()


@pytest.mark.parametrize("damaged", [False, True])
def test_push_killed_mid_upload_to_a_folder_resumes_its_partial_file(
    tmp_path: Path, damaged: bool
) -> None:
    blobs = [media(MOTO_SIZE, 7)]
    vault, ids = make_vault(tmp_path / "vault", "plain", blobs)
    spec = spec_for("folder", tmp_path, "plain", None)
    kill_push_halfway(vault, spec, None)
    assert not (tmp_path / "drive" / object_key(ids[0])).exists()
    [partial] = (tmp_path / "drive" / "tmp").glob("*.partial")
    assert 0 < partial.stat().st_size < MOTO_SIZE
    inode = partial.stat().st_ino
    if damaged:  # a prefix that no longer matches the source is written again
        damage(partial, 1000)
    finish_push(vault, spec, tmp_path, blobs)
    # The partial file itself was completed and linked into place.
    assert (tmp_path / "drive" / object_key(ids[0])).stat().st_ino == inode
    assert list((tmp_path / "drive" / "tmp").iterdir()) == []
    vault.close()


# -- a real 300 MB object, memory measured ------------------------------------------------

BUILD = """
import os, sys
from pathlib import Path
from mjvault import Vault
from mjvault.store.crypto import KdfParams
from tests.conftest import record_json

size, root, kind = int(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
kw = {}
if kind == "encrypted-vault":
    kw = dict(encrypt=True, passphrase="pw", kdf=KdfParams(iterations=1, lanes=1, memory_cost_kib=8192))
vault = Vault.init(root, **kw)
chunk = b"\\x89PNG\\r\\n\\x1a\\n" + os.urandom(1024 * 1024 - 8)
with vault.writer("t") as writer:
    image = writer.put_media_stream(chunk if n == 0 else os.urandom(1024 * 1024) for n in range(size))
    writer.add_job(record_json("job-1"), [image])
vault.close()
print(size)
"""

PUSH_ONE = """
import sys
from pathlib import Path
from mjvault import Vault
from mjvault.remotes.config import RemoteSpec, normalise_url
from mjvault.remotes.push import push
from mjvault.store.crypto import KdfParams
from mjvault.remotes.session import connect

with Vault.open(Path(sys.argv[1]), passphrase="pw") as vault:
    spec = RemoteSpec("r", normalise_url(sys.argv[2]), encrypt=sys.argv[3] == "encrypting-remote")
    kdf = KdfParams(iterations=1, lanes=1, memory_cost_kib=8192)
    with connect(vault, spec, passphrase="pw", create=True, kdf=kdf) as link:
        report = push(vault, link)
assert report.ok, report.problems
print(report.bytes_sent)
"""

CLONE_ONE = """
import sys
from mjvault.remotes.clone import clone
from mjvault.remotes.config import RemoteSpec, normalise_url

vault, report = clone(RemoteSpec("o", normalise_url(sys.argv[1])), sys.argv[2], passphrase="pw")
assert report.ok, report.problems
print(report.bytes_received)
vault.close()
"""


def run_child(script: str, args: list[str], workdir: Path) -> tuple[float, int]:
    workdir.mkdir()
    root = Path(__file__).resolve().parents[1]
    done = run_measured(
        [sys.executable, "-c", script, *args], workdir=workdir, cwd=root, timeout=600
    )
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    return done.peak_rss_mb, int(done.stdout)


@pytest.mark.parametrize("pairing", ["encrypted-vault", "encrypting-remote"])
def test_a_300_mb_object_goes_through_push_and_clone_in_bounded_memory(
    tmp_path: Path, pairing: str
) -> None:
    peaks: dict[tuple[str, int], float] = {}
    for megabytes in (1, 300):
        run = tmp_path / str(megabytes)
        run.mkdir()
        run_child(BUILD, [str(megabytes), str(run / "vault"), pairing], run / "build")
        peaks["push", megabytes], sent = run_child(
            PUSH_ONE, [str(run / "vault"), str(run / "remote"), pairing], run / "push"
        )
        assert sent >= megabytes * 1024 * 1024
        peaks["clone", megabytes], received = run_child(
            CLONE_ONE, [str(run / "remote"), str(run / "copy")], run / "clone"
        )
        assert received >= megabytes * 1024 * 1024
    for command in ("push", "clone"):
        grown = peaks[command, 300] - peaks[command, 1]
        assert grown < 100, f"{command}: {peaks[command, 1]:.0f} MB -> {peaks[command, 300]:.0f} MB"
