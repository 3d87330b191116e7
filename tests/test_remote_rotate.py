"""A remote of an encrypted vault after `key rotate`: the next push seals every object the
remote holds again under the vault's new secret, a push cut short half-way leaves it readable
and a rerun finishes, and the old key file then opens nothing there."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from config_helpers import isolate
from config_helpers import run_cli as run_in_process

from mjvault import Vault
from mjvault.errors import CorruptObject
from mjvault.integrity.rotate import rotate
from mjvault.remotes import bigobjects, reseal
from mjvault.remotes.clone import clone
from mjvault.remotes.config import RemoteSpec, normalise_url, save_spec
from mjvault.remotes.push import push
from mjvault.remotes.session import connect
from mjvault.remotes.verify import verify_remote
from mjvault.store.crypto import VaultKeys, unwrap_document
from mjvault.store.packfile import parse_trailer
from tests.conftest import CHEAP_KDF, PASSPHRASE, png_bytes, record_json

BIG = 96 * 1024  # above BIG_OBJECT_BYTES as the tests set it: streamed both ways


@pytest.fixture(autouse=True)
def small_big_objects(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bigobjects, "BIG_OBJECT_BYTES", 64 * 1024)
    monkeypatch.setattr(reseal, "BIG_OBJECT_BYTES", 64 * 1024)


def add_jobs(vault: Vault, start: int, stop: int) -> None:
    with vault.writer("test") as writer:
        for n in range(start, stop):
            writer.add_job(
                record_json(f"job-{n:03d}", f"a red fox number {n}"),
                [writer.put_media(png_bytes(n, BIG if n == 2 else 400))],
            )


def jobs_of(vault: Vault) -> dict[str, tuple[bytes, list[bytes]]]:
    return {
        e.job_id: (vault.record_json(e), [vault.store.read(i) for i in e.images if i])
        for e in vault.entries()
    }


def push_to(root: Path, spec: RemoteSpec, *, create: bool = False) -> list[str]:
    with (
        Vault.open(root, passphrase=PASSPHRASE) as vault,
        connect(vault, spec, passphrase=PASSPHRASE, create=create, kdf=CHEAP_KDF) as link,
    ):
        report = push(vault, link)
        assert report.ok, report.problems
        return report.notes


def expected_before(jobs: dict[str, tuple[bytes, list[bytes]]]) -> dict[str, object]:
    """The jobs pushed before the rotation (the one added after is not pushed yet)."""
    return {job: value for job, value in jobs.items() if job != "job-006"}


def remote_files(drive: Path) -> list[tuple[str, bytes]]:
    """(id, sealed bytes) of every object on a folder remote, loose or packed."""
    found = [(p.name, p.read_bytes()) for p in (drive / "objects").glob("*/*")]
    for pack in (drive / "packs").glob("*"):
        data = pack.read_bytes()
        trailer = parse_trailer(lambda n, o, data=data: data[o : o + n], len(data), pack.name, (1,))
        found += [(e.hex_id, data[e.offset : e.offset + e.length]) for e in trailer.entries]
    return found


def opens(keys: VaultKeys, files: list[tuple[str, bytes]]) -> int:
    count = 0
    for object_id, data in files:
        try:
            keys.open(object_id, data)
        except CorruptObject:
            continue
        count += 1
    return count


@pytest.fixture
def rotated(tmp_path: Path) -> tuple[Path, RemoteSpec, bytes, dict[str, tuple[bytes, list[bytes]]]]:
    """An encrypted vault pushed, rotated, one job added: (root, remote, old key file, jobs)."""
    root = tmp_path / "vault"
    spec = RemoteSpec("drive", normalise_url(str(tmp_path / "drive")))
    with Vault.init(root, encrypt=True, passphrase=PASSPHRASE, kdf=CHEAP_KDF) as vault:
        add_jobs(vault, 0, 6)
        save_spec(root, spec)
    push_to(root, spec, create=True)
    (old_key,) = (root / "keys").iterdir()
    old = old_key.read_bytes()
    rotate(root, PASSPHRASE, kdf=CHEAP_KDF)
    with Vault.open(root, passphrase=PASSPHRASE) as vault:
        add_jobs(vault, 6, 7)
        expected = jobs_of(vault)
    return root, spec, old, expected


def test_push_after_rotate_seals_the_remote_again(
    rotated: tuple[Path, RemoteSpec, bytes, dict[str, tuple[bytes, list[bytes]]]],
    tmp_path: Path,
) -> None:
    root, spec, old_key, expected = rotated
    drive = tmp_path / "drive"
    notes = push_to(root, spec)
    assert any("holds objects under a retired key: sealing them again" in n for n in notes)
    with (
        Vault.open(root, passphrase=PASSPHRASE) as vault,
        connect(vault, spec, passphrase=PASSPHRASE) as link,
    ):
        assert not link.needs_reseal
        assert verify_remote(link, read_data=True).ok
    # The remote's key files are exactly the vault's; the old one opens nothing there.
    assert sorted(p.name for p in (drive / "keys").iterdir()) == sorted(
        p.name for p in (root / "keys").iterdir()
    )
    old = VaultKeys(unwrap_document(json.loads(old_key), PASSPHRASE))
    files = remote_files(drive)
    assert len(files) > 14 and opens(old, files) == 0
    state = json.loads((drive / "object-key").read_bytes())
    assert state["resealing"] is None and state["retired"] == [old.object_check()]
    copy, report = clone(spec, tmp_path / "copy", passphrase=PASSPHRASE)
    with copy:
        assert report.ok and jobs_of(copy) == expected
    # Up to date: nothing sealed again, nothing sent.
    assert not any("retired" in n for n in push_to(root, spec))


def test_a_push_cut_short_mid_reseal_leaves_the_remote_readable_and_a_rerun_finishes(
    rotated: tuple[Path, RemoteSpec, bytes, dict[str, tuple[bytes, list[bytes]]]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    root, spec, old_key, expected = rotated
    drive = tmp_path / "drive"

    def cut(*args: object) -> int:
        raise RuntimeError("killed")

    originals = {n: getattr(reseal, n) for n in ("_resealed", "_reseal_big", "_reseal_pack")}
    real = reseal._resealed
    calls = []

    def every_other(*args: object) -> bytes | None:
        calls.append(args)
        return real(*args) if len(calls) % 2 else None  # type: ignore[arg-type]

    # Cut short: every other small loose object sealed again, the large one and the packs
    # not: the remote holds objects under both secrets.
    monkeypatch.setattr(reseal, "_resealed", every_other)
    monkeypatch.setattr(reseal, "_reseal_big", lambda *args: 0)
    monkeypatch.setattr(reseal, "_reseal_pack", cut)
    with pytest.raises(RuntimeError, match="killed"):
        push_to(root, spec)
    for name, function in originals.items():
        monkeypatch.setattr(reseal, name, function)
    old = VaultKeys(unwrap_document(json.loads(old_key), PASSPHRASE))
    files = remote_files(drive)
    assert 0 < opens(old, files) < len(files)
    assert json.loads((drive / "object-key").read_bytes())["resealing"] is not None
    with (
        Vault.open(root, passphrase=PASSPHRASE) as vault,
        connect(vault, spec, passphrase=PASSPHRASE) as link,
    ):
        assert link.needs_reseal and verify_remote(link, read_data=True).ok
    # A clone of the half-sealed remote keeps the new key only, and every object under it.
    copy, report = clone(spec, tmp_path / "half", passphrase=PASSPHRASE)
    with copy:
        assert report.ok and jobs_of(copy) == expected_before(expected)
    assert {p.name for p in (tmp_path / "half" / "keys").iterdir()} == {
        p.name for p in (root / "keys").iterdir()
    }
    with Vault.open(tmp_path / "half", passphrase=PASSPHRASE) as vault:
        from mjvault.integrity.verify import verify

        assert verify(vault, read_data=True).problems == []
    push_to(root, spec)
    files = remote_files(drive)
    assert opens(old, files) == 0
    assert json.loads((drive / "object-key").read_bytes())["resealing"] is None
    copy, report = clone(spec, tmp_path / "copy", passphrase=PASSPHRASE)
    with copy:
        assert report.ok and jobs_of(copy) == expected


def test_push_says_it_is_sealing_again(
    rotated: tuple[Path, RemoteSpec, bytes, dict[str, tuple[bytes, list[bytes]]]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    root, spec, _, _ = rotated
    isolate(monkeypatch, tmp_path)
    monkeypatch.setenv("MJVAULT_PASSPHRASE", PASSPHRASE)
    result = run_in_process(capsys, "--vault", str(root), "push", "drive")
    assert result.code == 0, result.err
    assert "remote drive holds objects under a retired key: sealing them again, " in result.err


def test_an_old_copy_of_the_vault_is_refused_after_the_reseal(
    rotated: tuple[Path, RemoteSpec, bytes, dict[str, tuple[bytes, list[bytes]]]],
    tmp_path: Path,
) -> None:
    """A clone made before the rotation would seal the remote back under the old secret."""
    root, spec, _, _ = rotated
    stale = tmp_path / "stale"
    copy, _ = clone(spec, stale, passphrase=PASSPHRASE)
    copy.close()
    push_to(root, spec)
    from mjvault.remotes.remote import RemoteMismatch

    with (
        Vault.open(stale, passphrase=PASSPHRASE) as vault,
        pytest.raises(RemoteMismatch, match="rotated away"),
    ):
        connect(vault, spec, passphrase=PASSPHRASE)


def test_an_encrypting_remote_of_a_plain_vault_is_unaffected(tmp_path: Path) -> None:
    root = tmp_path / "vault"
    spec = RemoteSpec("drive", normalise_url(str(tmp_path / "drive")), encrypt=True)
    with Vault.init(root) as vault:
        add_jobs(vault, 0, 3)
        with connect(vault, spec, passphrase=PASSPHRASE, create=True, kdf=CHEAP_KDF) as link:
            assert push(vault, link).ok
        add_jobs(vault, 3, 4)
        with connect(vault, spec, passphrase=PASSPHRASE) as link:
            assert not link.needs_reseal
            report = push(vault, link)
            assert report.ok and not report.notes
            assert verify_remote(link, read_data=True).ok
        expected = jobs_of(vault)
    assert not (tmp_path / "drive" / "object-key").exists()
    copy, report = clone(spec, tmp_path / "copy", passphrase=PASSPHRASE)
    with copy:
        assert report.ok and jobs_of(copy) == expected


# The child counts what a push writes to the remote while sealing it again (each PUT, upload
# and delete but the leases') and kills itself with SIGKILL at write N; N = 0 runs through and
# prints the count.
CHILD = """
import os, signal, sys
from pathlib import Path
from mjvault import Vault
from mjvault.remotes import bigobjects, reseal
from mjvault.remotes.config import load_spec
from mjvault.remotes.folder import FolderBackend
from mjvault.remotes.push import push
from mjvault.remotes.session import connect

bigobjects.BIG_OBJECT_BYTES = reseal.BIG_OBJECT_BYTES = 64 * 1024
steps, kill_at = 0, int(sys.argv[3])

def counted(function):
    def step(self, key, *args, **kwargs):
        global steps
        if not key.startswith("locks/"):
            steps += 1
            if steps == kill_at:
                os.kill(os.getpid(), signal.SIGKILL)
        return function(self, key, *args, **kwargs)
    return step

for name in ("put", "upload_file", "delete"):
    setattr(FolderBackend, name, counted(getattr(FolderBackend, name)))
root = Path(sys.argv[1])
with Vault.open(root, passphrase=sys.argv[2]) as vault:
    with connect(vault, load_spec(root, "drive"), passphrase=sys.argv[2]) as link:
        assert link.needs_reseal
        assert push(vault, link).ok
print(steps)
"""


def test_a_push_killed_mid_reseal_is_finished_by_the_next(
    rotated: tuple[Path, RemoteSpec, bytes, dict[str, tuple[bytes, list[bytes]]]],
    tmp_path: Path,
) -> None:
    import random
    import shutil
    import signal
    import subprocess
    import sys

    root, spec, old_key, expected = rotated
    old = VaultKeys(unwrap_document(json.loads(old_key), PASSPHRASE))
    shutil.copytree(root, tmp_path / "template-vault")
    shutil.copytree(tmp_path / "drive", tmp_path / "template-drive")

    def child(kill_at: int) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(
            [sys.executable, "-c", CHILD, str(root), PASSPHRASE, str(kill_at)],
            capture_output=True,
            timeout=120,
        )

    whole = child(0)
    assert whole.returncode == 0, whole.stderr
    steps = int(whole.stdout)
    assert steps > 10
    rng = random.Random(steps)
    for kill_at in sorted({2, rng.randrange(3, steps // 2), rng.randrange(steps // 2, steps)}):
        for name in ("vault", "drive"):
            shutil.rmtree(tmp_path / name)
            shutil.copytree(tmp_path / f"template-{name}", tmp_path / name)
        killed = child(kill_at)
        assert killed.returncode == -signal.SIGKILL, killed.stderr
        with (
            Vault.open(root, passphrase=PASSPHRASE) as vault,
            connect(vault, spec, passphrase=PASSPHRASE) as link,
        ):
            # Every object opens under one of the two secrets and matches its name.
            assert verify_remote(link, read_data=True).ok
        push_to(root, spec)
        assert opens(old, remote_files(tmp_path / "drive")) == 0
        copy, report = clone(spec, tmp_path / f"copy-{kill_at}", passphrase=PASSPHRASE)
        with copy:
            assert report.ok and jobs_of(copy) == expected


def test_a_remote_from_before_object_key_is_sealed_again_only_after_a_rotation(
    rotated: tuple[Path, RemoteSpec, bytes, dict[str, tuple[bytes, list[bytes]]]],
    tmp_path: Path,
) -> None:
    """No `object-key`: a key file the vault lacks wrapping another object secret says the
    remote predates a rotation; one wrapping the same secret (a passphrase removed) does not."""
    root, spec, old_key, expected = rotated
    drive = tmp_path / "drive"
    (drive / "object-key").unlink()
    notes = push_to(root, spec)
    assert any("holds objects under a retired key" in n for n in notes)
    old = VaultKeys(unwrap_document(json.loads(old_key), PASSPHRASE))
    assert opens(old, remote_files(drive)) == 0
    with Vault.open(root, passphrase=PASSPHRASE) as vault:
        removed = vault.add_key("second", kdf=CHEAP_KDF)
    push_to(root, spec)
    with Vault.open(root, passphrase=PASSPHRASE) as vault:
        vault.remove_key(removed)
    (drive / "object-key").unlink()
    assert (drive / "keys" / removed).exists()
    assert not any("retired" in n for n in push_to(root, spec))
    assert (drive / "keys" / removed).exists()  # a push still deletes no key file here
