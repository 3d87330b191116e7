"""Nothing readable at rest: an encrypted vault that imported, synced, searched, checked out,
made a gallery, pushed and forgot keeps no prompt, job id, username, user id or source path in
any byte of any file under its folder; a plain vault put through the same does (the control
that shows the scan can fail). Then the files this guarantee rests on, one by one: the sync
state, the checkpoint, the views' file lists (and their migration), the lock note."""

from __future__ import annotations

import json
import os
import re
import sqlite3
import uuid
from pathlib import Path
from typing import Any

import pytest
from config_helpers import isolate
from config_helpers import run_cli as run_in_process
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mjvault import Vault
from mjvault.errors import IntegrityError
from mjvault.lock import command_name
from mjvault.similarity.hashing import hashes_of_bytes
from mjvault.store import sealeddoc
from mjvault.store.crypto import VaultKeys
from mjvault.sync import STATE_FILE, SyncState
from mjvault.testing.accounts import Account
from mjvault.testing.archive import write_sample_archive
from mjvault.testing.server import FakeMidjourney
from mjvault.views.state import SealedSqliteTable, job_key
from tests.conftest import CHEAP_KDF, PASSPHRASE, png_bytes, record_json

USERNAME = "quillmothartist"
TOKEN = "sess-at-rest-0042"


def _needles(accounts: list[Account], archive: Path, user_id: str) -> dict[str, bytes]:
    """Every secret to look for, by a name that says what it is, in each form it may take."""
    found: dict[str, bytes] = {
        "user id": user_id.encode(),
        "user id (hex)": uuid.UUID(user_id).hex.encode(),
        "username": USERNAME.encode(),
        "source path": str(archive).encode(),
    }
    for account in accounts:
        for job in account.jobs:
            found[f"job id {job.id}"] = job.id.encode()
            found[f"job id {job.id} (16 bytes)"] = uuid.UUID(job.id).bytes
            prompt = str(job.record_v1().get("prompt") or "")
            if prompt:
                found[f"prompt of {job.id}"] = prompt.encode()
            for word in re.findall(r"[a-z]{8,}", prompt.lower()):
                found[f"prompt word {word!r}"] = word.encode()
    return found


def _scan(root: Path, needles: dict[str, bytes]) -> list[str]:
    """``file: needle`` for every needle found in every byte of every file under ``root``."""
    hits = []
    for folder, _, names in os.walk(root):
        for name in names:
            path = Path(folder, name)
            relative = path.relative_to(root).as_posix()
            data = path.read_bytes()
            lowered = data.lower()
            hits += [
                f"{relative}: {what}"
                for what, needle in needles.items()
                if needle in data or (needle.isascii() and needle.lower() in lowered)
            ]
    return hits


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    isolate(monkeypatch, tmp_path)
    monkeypatch.setenv("MJVAULT_PASSPHRASE", PASSPHRASE)
    return tmp_path


def _lived_in(world: Path, capsys: pytest.CaptureFixture[str], *, encrypt: bool) -> Path:
    """A vault put through every command that writes under it; returns the scan's needles'
    file (``needles.json`` beside it)."""
    vault = world / "vault"
    if encrypt:
        Vault.init(vault, encrypt=True, passphrase=PASSPHRASE, kdf=CHEAP_KDF).close()
    else:
        Vault.init(vault).close()
    archived = Account.generate(31, 8, username=USERNAME)
    archive = world / "archive"
    write_sample_archive(archive, jobs=6, seed=31, account=archived)
    synced = Account.generate(32, 8, username=USERNAME)

    def cli(*args: str) -> str:
        result = run_in_process(capsys, "--vault", str(vault), *args)
        assert result.code == 0, f"{args}: {result.err}"
        return result.out

    cli("import", str(archive))
    with FakeMidjourney(synced, token=TOKEN) as server:
        os.environ.update(
            {
                "MJVAULT_WEB_BASE": server.web_base,
                "MJVAULT_CDN_BASE": server.cdn_base,
                "MIDJOURNEY_SESSION_TOKEN": server.token,
                "MIDJOURNEY_USER_ID": server.user_id,
            }
        )
        cli("sync", "--max-rps", "1000")
        user_id = server.user_id
    first = synced.image_jobs()[0]
    word = re.findall(r"[a-z]{4,}", str(first.record_v1()["prompt"]).lower())[0]
    assert first.id[:8] in cli("search", word)
    cli("show", first.id)
    cli("checkout", str(world / "view"))
    cli("gallery", str(world / "gallery"))
    # A collection names jobs and thumbnails show prompts: both kept sealed.
    cli("collection", "add", "faves", first.id, synced.image_jobs()[1].id)
    cli("thumbs")
    cli("remote", "add", "nas", str(world / "remote"))
    cli("push", "nas")
    cli("forget", "--job", synced.image_jobs()[1].id)
    needles = _needles([archived, synced], archive, user_id)
    # What each kept image looks like, as its perceptual hashes (cache/hashes.sqlite).
    with Vault.open(vault, passphrase=PASSPHRASE if encrypt else None) as opened:
        for entry in opened.entries():
            for image in entry.images:
                hashes = hashes_of_bytes(opened.read_object(image)) if image else None
                for part, value in enumerate(hashes or []):
                    needles[f"perceptual hash {part} of {image}"] = value
    (world / "needles.json").write_text(json.dumps({k: v.hex() for k, v in needles.items()}))
    return vault


def _load_needles(world: Path) -> dict[str, bytes]:
    doc = json.loads((world / "needles.json").read_text())
    return {k: bytes.fromhex(v) for k, v in doc.items()}


def test_an_encrypted_vault_keeps_nothing_readable_at_rest(
    world: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    vault = _lived_in(world, capsys, encrypt=True)
    needles = _load_needles(world)
    hits = _scan(vault, needles)
    assert not hits, "readable at rest:\n" + "\n".join(hits)
    # The views did their part (outside the vault, owner-only); the scan did read them.
    assert (vault / "views" / "view.files").stat().st_size > 0
    assert (vault / STATE_FILE).read_bytes()[:4] == sealeddoc.MAGIC
    # The LMDB files were read too (the index and the store's pack map).
    assert (vault / "index" / "data.mdb").stat().st_size > 0


def test_a_plain_vault_put_through_the_same_is_found_out(
    world: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    vault = _lived_in(world, capsys, encrypt=False)
    needles = _load_needles(world)
    hits = _scan(vault, needles)
    # The files this change seals in an encrypted vault hold them in a plain one, as before.
    assert any(h.startswith("state/sync.json: user id") for h in hits), hits
    assert any(h.startswith("views/view.files: job id") for h in hits), hits
    assert any(h.startswith("views/view.files: prompt") for h in hits), hits
    for kind in ("user id", "username", "source path", "job id", "prompt word"):
        assert any(f": {kind}" in h for h in hits), kind
    assert any(h.startswith("index/data.mdb: prompt") for h in hits), hits
    assert any(h.startswith("cache/hashes.sqlite: perceptual hash") for h in hits), hits


def test_a_sync_killed_mid_run_leaves_nothing_readable(tmp_path: Path) -> None:
    """SIGKILL after a few checkpoints: the lock note, the checkpoint, tmp/ and the sync state
    a dead writer leaves behind are scanned as they lie."""
    from mjvault.testing.faults import Faults
    from tests.test_sync_kill import start_sync, wait_for_media_requests

    vault = tmp_path / "vault"
    Vault.init(vault, encrypt=True, passphrase=PASSPHRASE, kdf=CHEAP_KDF).close()
    account = Account.generate(33, 40, username=USERNAME)
    with FakeMidjourney(account, Faults(latency=0.004), token=TOKEN) as server:
        process = start_sync(vault, server, env={"MJVAULT_PASSPHRASE": PASSPHRASE})
        wait_for_media_requests(server, process, 40)
        process.kill()
        process.wait()
        user_id = server.user_id
    assert process.returncode == -9, "the sync ended before it could be killed"
    assert (vault / "refs" / "checkpoint").exists() and (vault / "lock").read_bytes()
    hits = _scan(vault, _needles([account], tmp_path / "no-archive", user_id))
    assert not hits, "readable at rest:\n" + "\n".join(hits)


# -- the files, one by one -------------------------------------------------------------------
def test_an_old_plain_sync_state_is_read_and_sealed_by_the_next_write(
    encrypted_vault: Vault,
) -> None:
    path = encrypted_vault.path / STATE_FILE
    path.parent.mkdir(exist_ok=True)
    key = "https://www.midjourney.com|0b9e7a8c-2a0e-4c43-9f1c-5d9a3c3b7e11"
    path.write_text(json.dumps({key: {"history_complete": True}}, indent=2))
    state = SyncState(encrypted_vault)
    assert state.account(key) == {"history_complete": True}
    state.update(key, gap=False)
    data = path.read_bytes()
    assert data.startswith(sealeddoc.MAGIC) and b"0b9e7a8c" not in data
    assert SyncState(encrypted_vault).account(key) == {"history_complete": True, "gap": False}
    # Sealed to its name: the same bytes under another name do not open.
    assert (
        sealeddoc.read(encrypted_vault.path, "state/other.json", encrypted_vault.store.keys) is None
    )
    # Damaged, it is no state at all (the next sync reads the whole listing), never a crash.
    path.write_bytes(data[:-3])
    assert SyncState(encrypted_vault).account(key) == {}


def test_a_plain_vaults_sync_state_is_the_json_it_always_was(vault: Vault) -> None:
    SyncState(vault).update("https://x|u-1", gap=True)
    assert json.loads((vault.path / STATE_FILE).read_bytes()) == {"https://x|u-1": {"gap": True}}


def test_a_checkpoint_keeps_an_imports_folder_sealed(encrypted_vault: Vault) -> None:
    source = "import:/home/someone/private/midjourney"
    writer = encrypted_vault.writer(source)
    writer.start()
    writer.add_job(record_json("job-1", "a hidden owl"), [writer.put_media(png_bytes(1))])
    writer.abort()  # what a killed run leaves: the checkpoint
    data = (encrypted_vault.path / "refs" / "checkpoint").read_bytes()
    assert b"/home/someone" not in data and b"job-1" not in data
    with encrypted_vault.writer("midjourney") as resumed:
        assert resumed.stats.resumed_from_checkpoint
    head = encrypted_vault.head()
    assert head is not None and head.source == f"{source}; midjourney"


def _old_sealed_list(vault: Vault, path: Path) -> None:
    """A version 1 list of an encrypted vault: paths sealed, job ids in the clear."""
    table = SealedSqliteTable(path, vault.store.keys)  # type: ignore[arg-type]
    table.put_new([("job-abc", 0, "owl/one.png", "0" * 64, "copy", None, 5, 7)])
    table.commit()
    table.close()
    db = sqlite3.connect(path)
    db.execute("UPDATE files SET job = 'job-abc', jk = ?", (job_key("job-abc"),))
    db.execute("PRAGMA user_version = 1")
    db.commit()
    db.close()


def test_an_old_sealed_file_list_is_rewritten_without_job_ids(encrypted_vault: Vault) -> None:
    path = encrypted_vault.path / "views" / "v.files"
    path.parent.mkdir(exist_ok=True)
    _old_sealed_list(encrypted_vault, path)
    assert b"job-abc" in path.read_bytes()
    table = SealedSqliteTable(path, encrypted_vault.store.keys)  # type: ignore[arg-type]
    assert table.holder("owl/one.png") == ("job-abc", 0)
    assert [(j, i, r.path) for j, i, r in table.iter_files()] == [("job-abc", 0, "owl/one.png")]
    assert table.of_jobs(["job-abc"])["job-abc"][0].size == 5
    table.delete(("job-abc", 0))
    table.commit()
    assert table.empty()
    table.close()
    assert b"job-abc" not in path.read_bytes()
    version = sqlite3.connect(path).execute("PRAGMA user_version").fetchone()[0]
    assert version == 2


@pytest.mark.parametrize("encrypt", [True, False])
def test_a_pull_keeps_no_node_plaintext_in_an_encrypted_vaults_scratch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, encrypt: bool
) -> None:
    from mjvault.remotes import pull as pulling
    from mjvault.remotes.clone import clone
    from mjvault.remotes.config import RemoteSpec, normalise_url
    from mjvault.remotes.push import push
    from mjvault.remotes.session import add_remote, connect

    options: dict[str, object] = {"passphrase": PASSPHRASE, "kdf": CHEAP_KDF} if encrypt else {}
    source = Vault.init(tmp_path / "vault", encrypt=encrypt, **options)  # type: ignore[arg-type]
    with source.writer("test") as writer:
        for n in range(3):
            writer.add_job(record_json(f"job-secret-{n}"), [writer.put_media(png_bytes(n))])
    spec = RemoteSpec("nas", normalise_url(str(tmp_path / "remote")))
    add_remote(source, spec)
    with connect(source, spec) as link:
        assert push(source, link).ok
    source.close()
    seen: list[tuple[int, int, bool]] = []
    keep_nodes = pulling._keep_nodes

    def looking(fetcher: Any, nodes: Any, broken: set[str]) -> None:
        nodes.db.commit()
        count, plain = nodes.db.execute("SELECT count(*), count(plaintext) FROM nodes").fetchone()
        (scratch,) = (tmp_path / "copy" / "remotes" / "origin").glob("scratch-*.sqlite")
        seen.append((count, plain, b"job-secret-" in scratch.read_bytes()))
        keep_nodes(fetcher, nodes, broken)

    monkeypatch.setattr(pulling, "_keep_nodes", looking)
    copy, report = clone(spec, tmp_path / "copy", passphrase=PASSPHRASE if encrypt else None)
    assert report.ok and sorted(e.job_id for e in copy.entries())[0] == "job-secret-0"
    copy.close()
    ((nodes, with_plaintext, readable),) = seen
    assert nodes > 0
    if encrypt:
        assert with_plaintext == 0 and not readable
    else:  # a plain vault's nodes are plain anyway: kept, so not fetched twice
        assert with_plaintext == nodes and readable


@pytest.mark.parametrize("encrypt", [True, False])
def test_an_encrypted_vaults_config_file_takes_no_user_id(
    world: Path, capsys: pytest.CaptureFixture[str], encrypt: bool
) -> None:
    vault = world / "vault"
    Vault.init(vault, encrypt=encrypt, passphrase=PASSPHRASE, kdf=CHEAP_KDF).close()
    user_id = "0b9e7a8c-2a0e-4c43-9f1c-5d9a3c3b7e11"
    args = ("--vault", str(vault), "config", "set", "--vault", "source.user_id", user_id)
    result = run_in_process(capsys, *args)
    written = (vault / "config.toml").read_text() if (vault / "config.toml").exists() else ""
    if encrypt:
        assert result.code == 2 and "plain text" in result.err and user_id not in written
        assert len(result.err.strip().splitlines()) <= 2  # the message and its hint
    else:
        assert result.code == 0 and user_id in written
    assert run_in_process(capsys, "--vault", str(vault), "config", "set", "--vault",
                          "sync.jobs", "4").code == 0  # fmt: skip


_KEYS = VaultKeys(b"\x05" * 32)
_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)


@given(doc=st.dictionaries(st.text(min_size=1), _json, max_size=6), name=st.text(min_size=1))
@settings(max_examples=60, suppress_health_check=[HealthCheck.too_slow])
def test_a_sealed_document_opens_as_written_and_only_under_its_name(doc: Any, name: str) -> None:
    sealed = sealeddoc.encode(doc, _KEYS, name)
    assert sealed[:5] == sealeddoc.MAGIC + b"\x01"
    assert sealeddoc.decode(sealed, _KEYS, name) == doc
    plain = sealeddoc.encode(doc, None, name)
    assert sealeddoc.decode(plain, None, name) == doc == sealeddoc.decode(plain, _KEYS, name)
    for key in doc:
        if len(key) >= 8:  # shorter texts may turn up in random bytes by chance
            assert key.encode() not in sealed
    with pytest.raises(ValueError):
        sealeddoc.decode(sealed, _KEYS, name + "x")
    with pytest.raises(ValueError):
        sealeddoc.decode(sealed, None, name)  # never taken for an empty document


@given(text=st.text(), other=st.text(), context=st.binary(max_size=40))
@settings(max_examples=60)
def test_a_fixed_seal_is_equal_for_equal_texts_alone(text: str, other: str, context: bytes) -> None:
    one = _KEYS.seal_text_fixed(text, context)
    assert one == _KEYS.seal_text_fixed(text, context)
    assert _KEYS.open_text(one, context) == text
    assert (one == _KEYS.seal_text_fixed(other, context)) == (text == other)
    assert one != _KEYS.seal_text_fixed(text, context + b"!")
    assert one != VaultKeys(b"\x06" * 32).seal_text_fixed(text, context)


def test_a_damaged_job_cell_is_an_integrity_error(encrypted_vault: Vault) -> None:
    path = encrypted_vault.path / "views" / "v.files"
    path.parent.mkdir(exist_ok=True)
    table = SealedSqliteTable(path, encrypted_vault.store.keys)  # type: ignore[arg-type]
    table.put_new([("job-abc", 0, "owl/one.png", "0" * 64, "copy", None, 5, 7)])
    table.commit()
    table.close()
    db = sqlite3.connect(path)
    db.execute("UPDATE files SET job = CAST(substr(job, 1, 20) || x'00' AS BLOB)")
    db.commit()
    db.close()
    table = SealedSqliteTable(path, encrypted_vault.store.keys)  # type: ignore[arg-type]
    with pytest.raises(IntegrityError, match="job id does not open"):
        table.job_ids()
    table.close()


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["/usr/bin/mjvault", "forget", "--job", "0b9e7a8c-2a0e"], "mjvault forget"),
        (["mjvault", "--vault", "/home/a/secret", "search", "owl"], "mjvault search"),
        (["mjvault", "--profile", "work", "sync"], "mjvault sync"),
        (["__main__.py", "--json", "import", "/home/a/mj"], "mjvault import"),
        (["mjvault", "0b9e7a8c-2a0e-4c43"], "mjvault"),
        (["mjvault"], "mjvault"),
    ],
)
def test_the_lock_note_names_the_command_and_nothing_else(argv: list[str], expected: str) -> None:
    assert command_name(argv) == expected
