"""`mjvault key rotate`: every object sealed again under a new secret, the old key then opening
nothing; a run killed at any moment continues; the key file format round-trips."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from config_helpers import isolate
from config_helpers import run_cli as run_in_process
from cryptography.exceptions import InvalidTag
from hypothesis import given, settings
from hypothesis import strategies as st

from mjvault import Vault
from mjvault.errors import CorruptObject, WrongPassphrase
from mjvault.integrity import rotate as rotate_module
from mjvault.integrity.rotate import RotationIncomplete, rotate
from mjvault.integrity.verify import verify
from mjvault.store.crypto import (
    SEALED_HEADER,
    KdfParams,
    VaultKeys,
    split_secret,
    unwrap_document,
    unwrap_master,
    wrap_secret,
)
from mjvault.store.keyring import journal_path
from mjvault.store.packfile import iter_entry_bytes, read_trailer, read_trailer_of
from tests.conftest import CHEAP_KDF, PASSPHRASE, png_bytes, record_json

ROOT = Path(__file__).resolve().parents[1]
BIG = 5 * 1024 * 1024  # above the size sealed again from memory: streamed


def make_vault(path: Path, jobs: int) -> None:
    """Records and tree nodes in two packs (the second run's named by the first's dictionary),
    media loose, one image large enough to be streamed."""
    with Vault.init(path, encrypt=True, passphrase=PASSPHRASE, kdf=CHEAP_KDF) as vault:
        for start, stop in ((0, jobs // 2), (jobs // 2, jobs)):
            with vault.writer("test") as writer:
                for n in range(start, stop):
                    writer.add_job(
                        record_json(f"job-{n:05d}", f"a red fox number {n} in the snow"),
                        [writer.put_media(png_bytes(n, BIG if n == 7 else 300))],
                    )


def contents(vault: Vault) -> dict[str, tuple[bytes, list[bytes]]]:
    return {
        entry.job_id: (
            vault.record_json(entry),
            [vault.store.read(i) for i in entry.images if i is not None],
        )
        for entry in vault.entries()
    }


def stored_files(root: Path) -> dict[str, bytes]:
    """Every object file and pack entry as stored, by id."""
    found = {}
    for path in (root / "objects").glob("*/*"):
        found[path.name] = path.read_bytes()
    for pack in (root / "packs").iterdir():
        fd = os.open(pack, os.O_RDONLY)
        try:
            for entry, data in iter_entry_bytes(fd, read_trailer(fd, os.fstat(fd).st_size)):
                found[entry.hex_id] = data
        finally:
            os.close(fd)
    return found


def test_rotation_reseals_everything_and_the_old_key_opens_nothing(tmp_path: Path) -> None:
    root = tmp_path / "vault"
    make_vault(root, jobs=1100)  # enough records for a dictionary, which the second pack names
    dictionaries = {read_trailer_of(str(p)).dictionary_id for p in (root / "packs").iterdir()}
    assert len(dictionaries) == 1 and None not in dictionaries
    old_master, _ = unwrap_master(root / "keys", PASSPHRASE)
    with Vault.open(root, passphrase=PASSPHRASE) as vault:
        before = contents(vault)
        head = vault.refs.head()
    ids = set(stored_files(root))
    assert any(len(data) > BIG for data in stored_files(root).values())

    report = rotate(root, PASSPHRASE, kdf=CHEAP_KDF)
    assert report.packs_rewritten == 2 and report.loose_resealed >= 1100
    assert report.damaged == [] and len(report.keys_removed) == 1
    assert not journal_path(root / "keys").exists()

    after = stored_files(root)
    assert set(after) == ids  # ids are kept: nothing above the objects changes
    old, new_secret = VaultKeys(old_master), unwrap_master(root / "keys", PASSPHRASE)[0]
    assert split_secret(new_secret)[1] == old_master  # the naming secret is kept
    for object_id, data in after.items():
        with pytest.raises(CorruptObject):
            old.open(object_id, data)
    with Vault.open(root, passphrase=PASSPHRASE) as vault:
        assert vault.refs.head() == head
        assert contents(vault) == before
        assert verify(vault, read_data=True).problems == []
        # A passphrase added after a rotation wraps the pair, and opens the vault.
        vault.add_key("another one", kdf=CHEAP_KDF)
    with Vault.open(root, passphrase="another one") as vault:
        assert contents(vault) == before


def test_a_kept_old_key_file_opens_nothing(tmp_path: Path) -> None:
    root = tmp_path / "vault"
    make_vault(root, jobs=40)
    aside = tmp_path / "old-keys"
    shutil.copytree(root / "keys", aside)
    rotate(root, PASSPHRASE, kdf=CHEAP_KDF)
    shutil.rmtree(root / "keys")
    shutil.copytree(aside, root / "keys")  # what a stolen copy of the old key file gives
    with Vault.open(root, passphrase=PASSPHRASE) as vault:
        for object_id in list(vault.store.iter_ids()):
            with pytest.raises(CorruptObject):
                vault.store.read(object_id)


def test_sealed_documents_and_the_forgotten_list_are_sealed_again(tmp_path: Path) -> None:
    """The sync state and the list of forgotten jobs are sealed with the text key, which a
    rotation replaces: left as they were, the next sync would find no state and read the whole
    listing again, and the list would be damaged."""
    from mjvault.integrity import exclusions
    from mjvault.store import sealeddoc

    root = tmp_path / "vault"
    make_vault(root, jobs=4)
    doc = {"http://127.0.0.1|user-id-in-the-state": {"history_complete": True}}
    with Vault.open(root, passphrase=PASSPHRASE) as vault:
        sealeddoc.write(root, "state/sync.json", doc, vault.store.keys)
        exclusions.add(vault, ["job-00001"], reason="test")
    before = (root / "state" / "sync.json").read_bytes()
    report = rotate(root, PASSPHRASE, kdf=CHEAP_KDF)
    assert report.documents_resealed == 2
    assert (root / "state" / "sync.json").read_bytes() != before
    with Vault.open(root, passphrase=PASSPHRASE) as vault:
        assert sealeddoc.read(root, "state/sync.json", vault.store.keys) == doc
        assert list(exclusions.read(vault).entries) == ["job-00001"]
        assert "job-00001" in exclusions.load(vault)


def test_damage_stops_the_rotation_before_any_key_goes(tmp_path: Path) -> None:
    root = tmp_path / "vault"
    make_vault(root, jobs=20)
    with Vault.open(root, passphrase=PASSPHRASE) as vault:
        before = contents(vault)
        victim = vault.store.path(next(iter(vault.entries())).images[0] or "")
    good = victim.read_bytes()
    victim.chmod(0o644)
    victim.write_bytes(good[:-1] + bytes([good[-1] ^ 1]))
    old_keys = sorted(p.name for p in (root / "keys").iterdir())
    with pytest.raises(RotationIncomplete):
        rotate(root, PASSPHRASE, kdf=CHEAP_KDF)
    assert journal_path(root / "keys").exists()
    assert set(old_keys) <= {p.name for p in (root / "keys").iterdir()}
    victim.write_bytes(good)  # repaired (here: the good bytes put back)
    report = rotate(root, PASSPHRASE, kdf=CHEAP_KDF)
    assert report.resumed and report.stragglers == 1 and report.damaged == []
    with Vault.open(root, passphrase=PASSPHRASE) as vault:
        assert contents(vault) == before
        assert verify(vault, read_data=True).problems == []


def test_push_streams_a_big_object_not_yet_sealed_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A streamed check (push of a big object) opens it under either secret half-way."""
    from mjvault.remotes import bigobjects
    from mjvault.remotes.config import RemoteSpec, normalise_url
    from mjvault.remotes.push import push
    from mjvault.remotes.session import connect
    from mjvault.remotes.verify import verify_remote

    monkeypatch.setattr(bigobjects, "BIG_OBJECT_BYTES", 256 * 1024)
    root = tmp_path / "vault"
    with (
        Vault.init(root, encrypt=True, passphrase=PASSPHRASE, kdf=CHEAP_KDF) as vault,
        vault.writer("test") as writer,
    ):
        writer.add_job(record_json("job-1"), [writer.put_media(png_bytes(1, 1024 * 1024))])

    def stop(*args: object) -> None:
        raise RuntimeError("stopped before any object")

    monkeypatch.setattr(rotate_module, "_reseal_loose", stop)
    with pytest.raises(RuntimeError):
        rotate(root, PASSPHRASE, kdf=CHEAP_KDF)
    spec = RemoteSpec("drive", normalise_url(str(tmp_path / "drive")))
    with (
        Vault.open(root, passphrase=PASSPHRASE) as vault,
        connect(vault, spec, passphrase=PASSPHRASE, create=True, kdf=CHEAP_KDF) as link,
    ):
        assert vault.store.keys is not None and vault.store.keys.rotating
        report = push(vault, link)
        assert report.ok, report.problems
        assert verify_remote(link, read_data=True).ok
    monkeypatch.undo()
    assert rotate(root, PASSPHRASE, kdf=CHEAP_KDF).resumed


def test_wrong_passphrase_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "vault"
    make_vault(root, jobs=4)
    isolate(monkeypatch, tmp_path)
    monkeypatch.setenv("MJVAULT_PASSPHRASE", "not the passphrase")
    result = run_in_process(capsys, "--vault", str(root), "key", "rotate")
    assert result.code != 0
    assert (
        result.err.strip() == "mjvault: error: wrong passphrase: no key of this vault opens with it"
    )
    assert "Traceback" not in result.err
    assert not journal_path(root / "keys").exists()
    with pytest.raises(WrongPassphrase):
        rotate(root, "not the passphrase", kdf=CHEAP_KDF)
    Vault.init(tmp_path / "plain").close()
    plain = run_in_process(capsys, "--vault", str(tmp_path / "plain"), "key", "rotate")
    assert plain.code != 0 and plain.err.strip() == (
        f"mjvault: error: {tmp_path / 'plain'} is not an encrypted vault: it has no keys to rotate"
    )


def test_views_are_resealed_and_an_unfinished_rotation_needs_its_passphrase(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "vault"
    make_vault(root, jobs=6)
    isolate(monkeypatch, tmp_path)
    monkeypatch.setenv("MJVAULT_PASSPHRASE", PASSPHRASE)
    view_dir = tmp_path / "view"
    assert run_in_process(capsys, "--vault", str(root), "checkout", str(view_dir)).code == 0
    with Vault.open(root, passphrase=PASSPHRASE) as vault:
        vault.add_key("second", kdf=CHEAP_KDF)

    def stop(*args: object) -> None:
        raise RuntimeError("stopped before the check")

    monkeypatch.setattr(rotate_module, "_check", stop)
    with pytest.raises(RuntimeError):
        rotate(root, PASSPHRASE, kdf=CHEAP_KDF)
    assert json.loads(journal_path(root / "keys").read_bytes())["views"] is True
    # Unfinished: the other passphrase still opens its key file, but not the journal.
    with pytest.raises(WrongPassphrase, match="unfinished"):
        Vault.open(root, passphrase="second")
    refused = run_in_process(capsys, "--vault", str(root), "key", "add")
    assert refused.code != 0 and "unfinished" in refused.err
    monkeypatch.undo()
    isolate(monkeypatch, tmp_path)
    monkeypatch.setenv("MJVAULT_PASSPHRASE", PASSPHRASE)
    done = run_in_process(capsys, "--vault", str(root), "--json", "key", "rotate")
    assert done.code == 0, done.err
    # The view was sealed again by the first run, right after its journal.
    assert done.json()["resumed"] and done.json()["views_resealed"] == 0
    assert len(done.json()["keys_removed"]) == 2
    with pytest.raises(WrongPassphrase):
        Vault.open(root, passphrase="second")  # its key file wrapped the old secret
    listed = run_in_process(capsys, "--vault", str(root), "--json", "checkout", "--list")
    assert listed.code == 0 and "error" not in listed.json()[0], listed.out
    again = run_in_process(capsys, "--vault", str(root), "--json", "checkout", str(view_dir))
    assert again.code == 0, again.err
    with Vault.open(root, passphrase=PASSPHRASE) as vault:
        assert verify(vault, read_data=True, views=True).problems == []


# The child counts the steps of a rotation (each object sealed again, each sync, each journal
# write, each pack swapped in) and kills itself with SIGKILL at step N: a kill lands between
# any two of them, whatever the machine's speed. N = 0 runs through and prints the count.
CHILD = """
import os, signal, sys
from pathlib import Path
from mjvault.integrity import rotate as r
from mjvault.store.crypto import KdfParams
from mjvault.store.repack import Repacker

steps, kill_at = 0, int(sys.argv[3])

def counted(function):
    def step(*args, **kwargs):
        global steps
        steps += 1
        if steps == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
        return function(*args, **kwargs)
    return step

for name in ("_reseal_file", "sync_filesystem", "write_journal", "store_keyfile", "_reseal_views"):
    setattr(r, name, counted(getattr(r, name)))
Repacker.flush = counted(Repacker.flush)
r.rotate(Path(sys.argv[1]), sys.argv[2], kdf=KdfParams(1, 1, 8192))
print(steps)
"""


def _rotate_child(root: Path, kill_at: int) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-c", CHILD, str(root), PASSPHRASE, str(kill_at)],
        cwd=ROOT,
        capture_output=True,
        timeout=60,
    )


def test_kill_at_random_moments_then_rerun_and_verify(tmp_path: Path) -> None:
    template = tmp_path / "template"
    make_vault(template, jobs=60)
    with Vault.open(template, passphrase=PASSPHRASE) as vault:
        before = contents(vault)
    counting = _rotate_child(shutil.copytree(template, tmp_path / "counting"), 0)
    assert counting.returncode == 0, counting.stderr
    steps = int(counting.stdout)
    rng = random.Random(14)
    # The first and last steps, and a few seeded ones between.
    for kill_at in sorted({1, 2, steps - 1, steps, *rng.sample(range(3, steps - 1), 4)}):
        root = shutil.copytree(template, tmp_path / f"at-{kill_at}")
        killed = _rotate_child(root, kill_at)
        assert killed.returncode == -signal.SIGKILL, killed.stderr
        assert journal_path(root / "keys").exists() or kill_at in (1, steps)
        if journal_path(root / "keys").exists():
            # Half-way, every object still opens (under either secret) and matches its name.
            with Vault.open(root, passphrase=PASSPHRASE) as vault:
                assert contents(vault) == before
        report = rotate(root, PASSPHRASE, kdf=CHEAP_KDF)
        assert report.damaged == []
        assert not journal_path(root / "keys").exists()
        assert len(list((root / "keys").iterdir())) == 1
        with Vault.open(root, passphrase=PASSPHRASE) as vault:
            assert contents(vault) == before
            assert verify(vault, read_data=True).problems == []


secrets = st.one_of(st.binary(min_size=32, max_size=32), st.binary(min_size=64, max_size=64))


@settings(max_examples=25, deadline=None)
@given(secret=secrets, passphrase=st.text(min_size=1, max_size=40), label=st.text(max_size=20))
def test_key_file_round_trip(secret: bytes, passphrase: str, label: str) -> None:
    kdf = KdfParams(iterations=1, lanes=1, memory_cost_kib=8)
    document = json.loads(json.dumps(wrap_secret(secret, passphrase, label=label, kdf=kdf)))
    assert document["version"] == (1 if len(secret) == 32 else 2)
    assert document["label"] == label
    assert unwrap_document(document, passphrase) == secret
    with pytest.raises(InvalidTag):
        unwrap_document(document, passphrase + "x")
    # A version 1 document relabelled as version 2 (or the reverse) does not open.
    swapped = dict(document, version=3 - document["version"])
    with pytest.raises((InvalidTag, ValueError)):
        unwrap_document(swapped, passphrase)


OLD_PAIR, NEW_PAIR = bytes(range(64)), bytes(range(100, 132)) + bytes(range(32, 64))


@settings(max_examples=50, deadline=None)
@given(plaintext=st.binary(max_size=5000), compress=st.booleans(), pieces=st.integers(1, 7))
def test_resealing_keeps_the_plaintext_and_leaves_the_old_key_nothing(
    plaintext: bytes, compress: bool, pieces: int
) -> None:
    object_id = "ab" * 32
    old, new = VaultKeys(OLD_PAIR), VaultKeys(NEW_PAIR)
    rotating = VaultKeys(NEW_PAIR, retired=OLD_PAIR[:32])
    assert old.naming_key == new.naming_key  # the naming secret is the same: ids stay
    sealed = old.seal(object_id, plaintext, compress=compress)
    fresh = rotating.reseal(object_id, sealed)
    assert fresh is not None and new.open(object_id, fresh) == plaintext
    assert rotating.open(object_id, sealed) == rotating.open(object_id, fresh) == plaintext
    with pytest.raises(CorruptObject):
        old.open(object_id, fresh)
    assert rotating.reseal(object_id, fresh) is None  # done already
    # Streamed, in any pieces, to the same effect.
    resealer = rotating.resealer(object_id, sealed[:SEALED_HEADER])
    body, out = sealed[SEALED_HEADER:], [resealer.header]
    step = max(1, len(body) // pieces)
    out += [resealer.update(body[i : i + step]) for i in range(0, len(body), step)]
    out.append(resealer.finish())
    assert new.open(object_id, b"".join(out)) == plaintext


@pytest.mark.parametrize("stop_at", ["journal", "check"])
def test_views_used_during_an_unfinished_rotation_stay_matched(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    stop_at: str,
) -> None:
    """A rotation stopped right after its journal (killed before any view is sealed again) or
    before its check; then a job updated, one forgotten and a checkout: every list row still
    matches its job, so the finished rotation leaves exactly one row per image shown."""
    root = tmp_path / "vault"
    make_vault(root, jobs=4)
    isolate(monkeypatch, tmp_path)
    monkeypatch.setenv("MJVAULT_PASSPHRASE", PASSPHRASE)
    view_dir = tmp_path / "view"

    def cli(*args: str) -> None:
        done = run_in_process(capsys, "--vault", str(root), *args)
        assert done.code == 0, done.err

    cli("checkout", "--template", "{prompt}_{job_id}", str(view_dir))
    if stop_at == "journal":
        # Step 1 writes the journal, step 2 is the first after it: killed there.
        killed = _rotate_child(root, 2)
        assert killed.returncode == -signal.SIGKILL, killed.stderr
        assert json.loads(journal_path(root / "keys").read_bytes())["views"] is False
    else:

        def stop(*args: object) -> None:
            raise RuntimeError("stopped before the check")

        with monkeypatch.context() as patch:
            patch.setattr(rotate_module, "_check", stop)
            with pytest.raises(RuntimeError):
                rotate(root, PASSPHRASE, kdf=CHEAP_KDF)
    assert journal_path(root / "keys").exists()
    with Vault.open(root, passphrase=PASSPHRASE) as vault, vault.writer("test") as writer:
        writer.add_job(
            record_json("job-00001", "a blue heron by the river"),
            [writer.put_media(png_bytes(1, 300))],
        )
    cli("forget", "--job", "job-00002", "--yes")
    cli("checkout", str(view_dir))
    cli("key", "rotate")
    assert not journal_path(root / "keys").exists()
    cli("checkout", str(view_dir))
    with Vault.open(root, passphrase=PASSPHRASE) as vault:
        assert verify(vault, read_data=True, views=True).problems == []
        from mjvault.views.registry import ViewRegistry

        registry = ViewRegistry(vault)
        (name,) = registry.names()
        rows = sorted((job, index) for job, index, _ in registry.load(name).iter_files())
        paths = sorted(p.name for p in view_dir.iterdir() if not p.name.startswith("."))
    assert rows == [("job-00000", 0), ("job-00001", 0), ("job-00003", 0)]
    assert len(paths) == 3 and "heron" in " ".join(paths), paths
    assert not any("number 2 " in p or "number 1 " in p for p in paths), paths


def test_old_key_files_are_gone_for_good_before_the_journal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The keys directory is synced once the old key files are removed and before the journal
    goes: a crash then cannot bring an old key file back without its journal."""
    root = tmp_path / "vault"
    make_vault(root, jobs=2)
    keys_dir = root / "keys"
    synced: list[tuple[int, bool]] = []
    real = rotate_module.sync_filesystem

    def noting(path: Path) -> None:
        if Path(path) == keys_dir:
            key_files = [p for p in keys_dir.iterdir() if not p.name.startswith(".")]
            synced.append((len(key_files), journal_path(keys_dir).exists()))
        real(path)

    monkeypatch.setattr(rotate_module, "sync_filesystem", noting)
    rotate(root, PASSPHRASE, kdf=CHEAP_KDF)
    # One key file left, the journal still there: the removals durable before it goes.
    assert (1, True) in synced, synced


def test_a_list_with_old_job_cells_is_sealed_again_when_opened_mid_rotation(
    tmp_path: Path,
) -> None:
    """A list whose job ids are under the retired key (and, as earlier versions left it, a
    second row for an image beside the one they missed): opened during the rotation, every
    cell is sealed again under the new key and only the newest row of each image stays."""
    import sqlite3

    from mjvault.views.links import LinkKind
    from mjvault.views.registry import FileRecord
    from mjvault.views.state import SealedSqliteTable

    naming = os.urandom(32)
    old, new = os.urandom(32), os.urandom(32)
    path = tmp_path / "v.files"
    table = SealedSqliteTable(path, VaultKeys(old + naming), fresh=True)
    first = FileRecord("a red fox_j1.png", "ab" * 32, LinkKind.SYMLINK, None, 0, 0)
    table.put_many([(("j1", 0), first), (("j2", 0), first._replace(path="b_j2.png"))])
    table.commit()
    table.close()
    # What a checkout under the new key left before lists kept their cells check: a second
    # row for j1's image, its cell under the new key; the list's check gone.
    rotating = VaultKeys(new + naming, retired=old)
    later = first._replace(path="a blue heron_j1.png")
    db = sqlite3.connect(path)
    jk = rotating.text_key("job\0j1")  # the naming secret's: unchanged by the rotation
    db.execute(
        "INSERT INTO files SELECT jk, ?, idx, ?, oid, kind, plain, size, mtime, fh, ph "
        "FROM files WHERE jk = ?",
        (
            rotating.seal_text_fixed("j1", b"mjvault view file\0job"),
            rotating.seal_text(later.path, b"mjvault view file\0path\0j1\x000"),
            jk,
        ),
    )
    db.execute("DROP TABLE IF EXISTS meta")
    db.commit()
    db.close()
    table = SealedSqliteTable(path, rotating)
    assert table.count() == 2
    assert table.get(("j1", 0)) == later
    table.delete(("j2", 0))
    table.commit()
    table.close()
    # Every cell now opens under the new key alone: the rotation can end.
    finished = SealedSqliteTable(path, VaultKeys(new + naming))
    assert [(job, idx) for job, idx, _ in finished.iter_files()] == [("j1", 0)]
    finished.close()
