"""Forgetting for good: the list of forgotten jobs, honoured by sync (every API generation),
import and pull, shown and undone by `forget`, reaching thumbnails and remotes, and files
overwritten before gc unlinks them — against the bundled Midjourney server, real vaults and
folder remotes, the CLI run in process."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mjvault import Vault
from mjvault.integrity import exclusions
from mjvault.remotes.config import RemoteSpec, normalise_url
from mjvault.remotes.push import push
from mjvault.remotes.session import add_remote, connect
from mjvault.sources.importer import import_archive
from mjvault.sources.midjourney import MidjourneyClient
from mjvault.sync import SyncOptions, SyncReport, sync
from mjvault.testing.accounts import Account
from mjvault.testing.server import FakeMidjourney
from tests.conftest import CHEAP_KDF, PASSPHRASE, Result, invoke_cli, png_bytes, record_json
from tests.test_sync import TOKEN, cli_env, settings_for

JOBS = 12


@pytest.fixture(scope="module")
def account() -> Account:
    return Account.generate(71, JOBS)


@pytest.fixture
def server(account: Account) -> Iterator[FakeMidjourney]:
    with FakeMidjourney(account, token=TOKEN) as running:
        yield running


Cli = Callable[..., Result]


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch) -> Cli:
    """The `mjvault` command in this process: (vault, *args) -> exit code, stdout, stderr; in
    the environment as the test leaves it, without the MJVAULT_* settings it started with."""
    for key in list(os.environ):
        if key.startswith("MJVAULT_"):
            monkeypatch.delenv(key)

    def invoke(vault: Path, *args: str, stdin: str | None = None) -> Result:
        data = None if stdin is None else stdin.encode()
        return Result.of(invoke_cli(["--vault", str(vault), *args], input=data))

    return invoke


def synced(path: Path, server: FakeMidjourney, api: str = "v3", full: bool = True) -> SyncReport:
    with Vault.open(path) as vault, MidjourneyClient(settings_for(server, api)) as client:
        return sync(vault, client, SyncOptions(concurrency=4, full=full))


def held(path: Path) -> set[str]:
    with Vault.open(path) as vault:
        return {entry.job_id for entry in vault.entries()}


@pytest.mark.parametrize("api", ["v1", "v2", "v3"])
def test_forgotten_job_stays_out_of_full_syncs_until_undone(
    tmp_path: Path, server: FakeMidjourney, cli: Cli, api: str
) -> None:
    path = tmp_path / "vault"
    Vault.init(path).close()
    synced(path, server, api)
    gone = sorted(held(path))[3]
    done = cli(path, "--json", "forget", "--job", gone)
    assert done.code == 0, done.err
    assert done.json()["added"] == [gone]
    assert gone not in held(path)

    report = synced(path, server, api)
    assert report.jobs_forgotten == 1 and report.jobs_new == 0
    assert gone not in held(path)
    # An incremental sync and a dry run leave it out as well.
    assert synced(path, server, api, full=False).jobs_new == 0
    with Vault.open(path) as vault, MidjourneyClient(settings_for(server, api)) as client:
        dry = sync(vault, client, SyncOptions(dry_run=True, full=True))
    assert gone not in {job["id"] for job in dry.would_fetch} and dry.jobs_forgotten == 1

    undone = cli(path, "forget", "--undo", gone)
    assert undone.code == 0, undone.err
    back = synced(path, server, api)
    assert back.jobs_new == 1 and back.jobs_forgotten == 0
    assert gone in held(path)


def test_sync_summary_counts_forgotten_jobs(
    tmp_path: Path, server: FakeMidjourney, cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "vault"
    Vault.init(path).close()
    synced(path, server)
    first, second = sorted(held(path))[:2]
    assert cli(path, "forget", "--job", first, "--job", second).code == 0
    for key, value in cli_env(server).items():
        monkeypatch.setenv(key, value)
    out = cli(path, "sync", "--full")
    assert out.code == 0, out.err
    assert "2 forgotten jobs skipped" in out.out
    listed = cli(path, "--json", "forget", "--list").json()
    assert listed["count"] == 2
    assert {e["id"] for e in listed["jobs"]} == {first, second}


def write_archive(root: Path, ids: list[str]) -> Path:
    day = root / "2023" / "2023-05" / "2023-05-26"
    day.mkdir(parents=True)
    for n, job_id in enumerate(ids):
        stem = f"20230526-0738{n:02d}_{job_id}"
        (day / f"{stem}.json").write_bytes(record_json(job_id, f"a fox number {n}"))
        (day / f"{stem}.png").write_bytes(png_bytes(n))
    return root


def test_import_honours_the_list(tmp_path: Path, cli: Cli) -> None:
    ids = [f"job-{n}" for n in range(4)]
    archive = write_archive(tmp_path / "archive", ids)
    path = tmp_path / "vault"
    with Vault.init(path) as vault:
        import_archive(vault, archive)
    assert cli(path, "forget", "--job", "job-2").code == 0
    with Vault.open(path) as vault:  # the stat cache knows the record: still left out
        report = import_archive(vault, archive)
    assert report.jobs_forgotten == 1 and "job-2" not in held(path)
    other = tmp_path / "other"
    with Vault.init(other) as vault:
        exclusions.add(vault, ["job-1"], "job")
        fresh = import_archive(vault, archive)
    assert fresh.jobs_forgotten == 1 and held(other) == {"job-0", "job-2", "job-3"}


def snapshot_with(vault: Vault, ids: list[str]) -> None:
    with vault.writer("test") as writer:
        for n, job_id in enumerate(ids):
            image = writer.put_media(png_bytes(100 + n, 300))
            writer.add_job(record_json(job_id, f"prompt {n} fox"), [image])


@pytest.mark.parametrize("search", ["walk", "lookup"])
def test_pull_takes_a_snapshot_without_forgotten_jobs_and_gc_remote_reaches_it(
    tmp_path: Path, cli: Cli, monkeypatch: pytest.MonkeyPatch, search: str
) -> None:
    # Whether the pulled snapshot is searched by walking its leaves or by looking up each
    # forgotten job depends on their sizes: both ways are taken here.
    ratio = 0 if search == "lookup" else 10**9
    monkeypatch.setattr("mjvault.integrity.forget.LOOKUPS_PER_WALKED_JOB", ratio)
    spec = RemoteSpec("offsite", normalise_url(str(tmp_path / "remote")))
    with Vault.init(tmp_path / "a") as a:
        snapshot_with(a, ["job-0", "job-1", "job-2"])
        add_remote(a, spec)
        with connect(a, spec) as link:
            assert push(a, link).ok
    path = tmp_path / "b"
    with Vault.init(path) as b:
        exclusions.add(b, ["job-1"], "job")
        add_remote(b, spec)
    pulled = cli(path, "pull", "offsite")
    assert pulled.code == 0, pulled.err
    assert held(path) == {"job-0", "job-2"}
    with Vault.open(path) as b:
        head = b.head()
        assert head is not None and head.stats["forgotten"] == 1
        assert b.current_index().get("job-1") is None
    info = cli(path, "--json", "remote", "info", "offsite")
    assert info.json()["forgotten_pending"] == 1
    assert "may still hold 1 forgotten jobs" in cli(path, "remote", "info", "offsite").out

    swept = cli(path, "gc", "--remote", "offsite", "--grace", "0")
    assert swept.code == 0, swept.err
    assert cli(path, "--json", "remote", "info", "offsite").json()["forgotten_pending"] == 0
    # The remote now holds the rewrite alone: a fresh clone of it has no job-1.
    with Vault.init(tmp_path / "c") as c:
        add_remote(c, spec)
    assert cli(tmp_path / "c", "pull", "offsite").code == 0
    assert held(tmp_path / "c") == {"job-0", "job-2"}


def retained_on_remote(tmp_path: Path, cli: Cli, sealed: bool) -> tuple[Path, list[str], str, str]:
    """Retention leaves exactly this: the remote keeps an old snapshot the vault let go, and
    a job of it is then forgotten. (vault, passphrase options, old snapshot, the job's image)"""
    spec = RemoteSpec("nas", normalise_url(str(tmp_path / "remote")))
    path = tmp_path / "vault"
    (tmp_path / "pass").write_text(PASSPHRASE)
    key = ["--passphrase-file", str(tmp_path / "pass")] if sealed else []
    made = Vault.init(path, encrypt=True, passphrase=PASSPHRASE, kdf=CHEAP_KDF) if sealed else None
    with made or Vault.init(path) as vault:
        snapshot_with(vault, ["job-A", "job-B"])
        old = vault.refs.head()
        with vault.writer("test") as writer:
            writer.add_job(record_json("job-C", "a heron"), [None])
        image = vault.entry("job-A").images[0]
        add_remote(vault, spec)
        with connect(vault, spec) as link:
            assert push(vault, link).ok
    assert old is not None and image is not None
    assert cli(path, *key, "forget", old).code == 0
    assert cli(path, *key, "forget", "--job", "job-A").code == 0
    assert cli(path, *key, "--json", "remote", "info", "nas").json()["forgotten_pending"] == 1
    return path, key, old, image


@pytest.mark.parametrize("sealed", [False, True])
def test_gc_remote_reaches_remote_snapshots_the_vault_no_longer_holds(
    tmp_path: Path, cli: Cli, sealed: bool
) -> None:
    path, key, old, image = retained_on_remote(tmp_path, cli, sealed)
    spec = RemoteSpec("nas", normalise_url(str(tmp_path / "remote")))

    swept = cli(path, *key, "gc", "--remote", "nas", "--grace", "0")
    assert swept.code == 0, swept.err
    assert "1 forgotten jobs are no longer on remote nas" in swept.out
    assert cli(path, *key, "--json", "remote", "info", "nas").json()["forgotten_pending"] == 0
    # The vault still lacks the old snapshot, as it chose.
    with Vault.open(path, passphrase=PASSPHRASE if sealed else None) as vault:
        assert old not in vault.refs.snapshot_ids() and len(vault.refs.snapshot_ids()) == 1
    # Every snapshot the remote holds is without job-A, and its image is gone from it.
    clone = tmp_path / "clone"
    cloned = cli(tmp_path, "clone", *key, str(tmp_path / "remote"), str(clone))
    assert cloned.code == 0, cloned.err
    with Vault.open(clone, passphrase=PASSPHRASE if sealed else None) as c:
        snapshots = c.snapshots()
        assert len(snapshots) == 2
        kept = [{e.job_id for e in c.tree.walk(s.tree)} for s in snapshots]
        assert sorted(kept, key=len) == [{"job-B"}, {"job-B", "job-C"}]
        assert not c.store.exists(image)
        with connect(c, spec) as link:
            assert image not in link.remote.listing()


def test_a_remote_snapshot_that_cannot_be_searched_keeps_the_remote_pending(
    tmp_path: Path, cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mjvault.errors import CorruptObject

    path, key, _, _ = retained_on_remote(tmp_path, cli, False)

    def unreadable(*args: object) -> set[str]:
        raise CorruptObject("a node of it does not open")

    monkeypatch.setattr("mjvault.remotes.prune.forgotten_in", unreadable)  # where gc looks
    swept = cli(path, "gc", "--remote", "nas", "--grace", "0")
    assert swept.code == 0, swept.err
    assert "1 of its snapshots this vault does not hold could not be read" in swept.out
    assert cli(path, "--json", "remote", "info", "nas").json()["forgotten_pending"] == 1


def test_a_remote_rewrite_equal_to_the_vaults_own_keeps_the_vaults_marker(tmp_path: Path) -> None:
    from mjvault.integrity.forget import forget_jobs
    from mjvault.remotes.prune import _rewrite_remote_only

    spec = RemoteSpec("nas", normalise_url(str(tmp_path / "remote")))
    with Vault.init(tmp_path / "vault") as vault:
        snapshot_with(vault, ["job-A", "job-B"])
        add_remote(vault, spec)
        with connect(vault, spec) as link:
            assert push(vault, link).ok
            old = vault.refs.head()
            forget_jobs(vault, ["job-A"])  # the remote not reached: it keeps the old snapshot
            mine = vault.refs.head()
            assert mine != old and vault.refs.snapshot_ids() == [mine]
            assert _rewrite_remote_only(vault, link) == 0
            # The remote's rewrite of its old snapshot is the vault's own: pushed, kept here.
            assert vault.refs.snapshot_ids() == [mine] and vault.refs.head() == mine
            assert link.remote.snapshot_ids() == {mine}


def test_search_dry_run_counts_and_confirmation(
    tmp_path: Path, cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "vault"
    with Vault.init(path) as vault:
        snapshot_with(vault, ["job-0", "job-1", "job-2"])
        with vault.writer("test") as writer:
            writer.add_job(record_json("job-9", "a quiet lake"), [None])
    dry = cli(path, "--json", "forget", "--search", "fox", "--dry-run")
    assert dry.code == 0, dry.err
    assert dry.json()["matched"] == 3 and dry.json()["dry_run"] is True
    assert "would forget 3 jobs" in cli(path, "forget", "--search", "fox", "--dry-run").out
    assert len(held(path)) == 4 and not (path / exclusions.LIST_FILE).exists()

    refused = cli(path, "forget", "--search", "fox")  # not a terminal, no --yes
    assert refused.code == 2 and "--yes" in refused.err and len(held(path)) == 4

    monkeypatch.setattr("mjvault.cli.gc._on_terminal", lambda: True)
    declined = cli(path, "forget", "--search", "fox", stdin="n\n")
    assert declined.code != 0 and "Forget 3 jobs for good" in declined.err
    assert "nothing forgotten" in declined.err and len(held(path)) == 4
    accepted = cli(path, "forget", "--search", "fox", stdin="y\n")
    assert accepted.code == 0, accepted.err
    assert held(path) == {"job-9"}
    entries = cli(path, "--json", "forget", "--list").json()["jobs"]
    assert {e["reason"] for e in entries} == {"search: fox"}
    assert cli(path, "forget", "--search", "lake", "--yes").code == 0
    assert held(path) == set()


@pytest.mark.parametrize("damage", ["garbage", "truncated", "flipped", "empty"])
def test_a_damaged_list_is_one_line_never_an_empty_list(
    tmp_path: Path, server: FakeMidjourney, cli: Cli, monkeypatch: pytest.MonkeyPatch, damage: str
) -> None:
    path = tmp_path / "vault"
    Vault.init(path).close()
    synced(path, server)
    gone = sorted(held(path))[0]
    assert cli(path, "forget", "--job", gone).code == 0
    list_file = path / exclusions.LIST_FILE
    data = list_file.read_bytes()
    list_file.write_bytes(
        {
            "garbage": b"not a list at all",
            "truncated": data[: len(data) // 2],
            "flipped": data[:12] + bytes([data[12] ^ 1]) + data[13:],
            "empty": b"",
        }[damage]
    )
    for key, value in cli_env(server).items():
        monkeypatch.setenv(key, value)
    archive = str(write_archive(tmp_path / "archive", ["job-x"]))
    commands = [("sync", "--full"), ("import", archive), ("forget", "--list")]
    for args in (*commands, ("forget", "--undo", gone), ("gc", "--grace", "0")):
        out = cli(path, *args)
        lines = [line for line in out.err.splitlines() if line.strip()]
        assert out.code == 3, (args, out.err)
        assert len(lines) == 1 and "forgotten jobs" in lines[0] and "damaged" in lines[0], out.err
        assert "Traceback" not in out.err
    assert gone not in held(path)


def test_encrypted_list_names_no_job_and_opens_with_the_key(tmp_path: Path, cli: Cli) -> None:
    path = tmp_path / "vault"
    secret = tmp_path / "pass"
    secret.write_text(PASSPHRASE)
    with Vault.init(path, encrypt=True, passphrase=PASSPHRASE, kdf=CHEAP_KDF) as vault:
        snapshot_with(vault, ["job-secret-0", "job-secret-1"])
    done = cli(path, "--passphrase-file", str(secret), "forget", "--job", "job-secret-1")
    assert done.code == 0, done.err
    data = (path / exclusions.LIST_FILE).read_bytes()
    assert b"job-secret" not in data and b"job" not in data
    listed = cli(path, "--passphrase-file", str(secret), "--json", "forget", "--list")
    assert [e["id"] for e in listed.json()["jobs"]] == ["job-secret-1"]
    # The same list under another vault's keys is not this vault's: damaged, not empty.
    with Vault.init(tmp_path / "w", encrypt=True, passphrase=PASSPHRASE, kdf=CHEAP_KDF) as w:
        (w.path / exclusions.LIST_FILE).parent.mkdir(exist_ok=True)
        (w.path / exclusions.LIST_FILE).write_bytes(data)
        with pytest.raises(exclusions.ListDamaged):
            exclusions.load(w)


@settings(max_examples=25, deadline=None)
@given(
    kept=st.sets(st.text(min_size=1, max_size=40), max_size=30),
    others=st.lists(st.text(min_size=1, max_size=40), max_size=10),
)
def test_membership_is_exactly_the_list(
    tmp_path_factory: pytest.TempPathFactory, kept: set[str], others: list[str]
) -> None:
    with Vault.init(tmp_path_factory.mktemp("v") / "vault") as vault:
        exclusions.add(vault, kept, "job")
        forgotten = exclusions.load(vault)
        assert len(forgotten) == len(kept)
        assert all(job_id in forgotten for job_id in kept)
        assert not any(job_id in forgotten for job_id in others if job_id not in kept)
        assert set(exclusions.read(vault).entries) == kept
        exclusions.remove(vault, list(kept)[:1])
        assert len(exclusions.load(vault)) == max(0, len(kept) - 1)


def test_gc_overwrites_forgotten_files_and_drops_their_thumbnails(tmp_path: Path, cli: Cli) -> None:
    path = tmp_path / "vault"
    with Vault.init(path) as vault:
        snapshot_with(vault, ["job-0", "job-1", "job-2"])
        image = vault.entry("job-1").images[0]
        kept_image = vault.entry("job-2").images[0]
        assert image is not None and kept_image is not None
        image_file, kept_file = vault.object_path(image), vault.object_path(kept_image)
    thumbs = path / "cache" / "thumbs.sqlite"
    thumbs.parent.mkdir(exist_ok=True)
    with sqlite3.connect(thumbs) as db:
        db.executescript(
            "CREATE TABLE thumbs (source TEXT NOT NULL, size INTEGER NOT NULL,"
            " thumb TEXT NOT NULL, kind TEXT NOT NULL, PRIMARY KEY (source, size)) WITHOUT ROWID;"
            "PRAGMA user_version = 1;"
        )
        db.execute("INSERT INTO thumbs VALUES (?, 240, ?, 'png')", (image, "ab" * 32))
        db.execute("INSERT INTO thumbs VALUES (?, 240, ?, 'png')", (kept_image, "cd" * 32))
    # Open descriptors show what the removal did to the bytes themselves.
    seen, kept = os.open(image_file, os.O_RDONLY), os.open(kept_file, os.O_RDONLY)
    size = os.fstat(seen).st_size
    assert cli(path, "forget", "--job", "job-1").code == 0
    with sqlite3.connect(thumbs) as db:
        assert [r[0] for r in db.execute("SELECT source FROM thumbs")] == [kept_image]
    with Vault.open(path) as vault:  # the dropped thumbnail's file is to be overwritten too
        assert {image, "ab" * 32} <= exclusions.read(vault).shred
    swept = cli(path, "gc", "--grace", "0")
    assert swept.code == 0, swept.err
    assert not image_file.exists() and "overwrote" in swept.out
    assert os.pread(seen, size + 1, 0) == bytes(size)
    assert os.pread(kept, 1000, 0) == png_bytes(102, 300)
    os.close(seen)
    os.close(kept)
    with Vault.open(path) as vault:
        # Each id was overwritten or is stored nowhere (the thumbnail's file was never made).
        assert exclusions.read(vault).shred == set()


UNPRIVILEGED_GC = """
import sys
from mjvault import Vault
from mjvault.integrity.gc import gc

with Vault.open(sys.argv[1]) as vault:
    print("; ".join(gc(vault, grace_seconds=0).notes))
"""


def test_gc_overwrites_read_only_files_as_their_owner_not_root(tmp_path: Path) -> None:
    """Object, pack and aside files are 0444: only root may open them for writing as they
    are. The gc runs as an ordinary user who owns the vault, as vaults are run."""
    import shutil
    import subprocess
    import sys

    from mjvault.integrity.forget import forget_jobs
    from mjvault.integrity.verify import verify

    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("setpriv (util-linux) is needed to run gc as an unprivileged user")
    nobody = 65534
    path = tmp_path / "vault"
    with Vault.init(path) as vault:
        snapshot_with(vault, ["job-0", "job-1", "job-2"])
        image = vault.entry("job-1").images[0]
        assert image is not None
        image_file = vault.object_path(image)
        assert image_file.stat().st_mode & 0o777 == 0o444
        seen = os.open(image_file, os.O_RDONLY)
        size = os.fstat(seen).st_size
        forget_jobs(vault, ["job-1"])
        # What a killed gc leaves aside: read-only like the object file it was.
        vault.store.tmp_dir.mkdir(exist_ok=True)
        leftover = vault.store.tmp_dir / f"{exclusions.ASIDE_PREFIX}{'ef' * 32}"
        leftover.write_bytes(b"left by a killed gc")
        leftover.chmod(0o444)
        left = os.open(leftover, os.O_RDONLY)
    for root, dirs, files in os.walk(tmp_path):
        for name in [root, *(os.path.join(root, n) for n in dirs + files)]:
            os.lchown(name, nobody, nobody)
    # The user must reach the vault through the test's temp folders (made 0700 for root).
    opened = []
    for folder in [tmp_path, *tmp_path.parents]:
        if folder.stat().st_mode & 0o001 == 0:
            opened.append((folder, folder.stat().st_mode))
            folder.chmod(folder.stat().st_mode | 0o011)
    try:
        ran = subprocess.run(
            [setpriv, f"--reuid={nobody}", f"--regid={nobody}", "--clear-groups"]
            + [sys.executable, "-c", UNPRIVILEGED_GC, str(path)],
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        for folder, mode in opened:
            folder.chmod(mode)
    assert ran.returncode == 0, ran.stderr
    assert "overwrote 2 files" in ran.stdout  # the image and the record
    assert not image_file.exists() and not leftover.exists()
    assert os.pread(seen, size + 1, 0) == bytes(size)
    assert os.pread(left, 100, 0) == bytes(len(b"left by a killed gc"))
    os.close(seen)
    os.close(left)
    with Vault.open(path) as vault:
        assert exclusions.read(vault).shred == set()
        assert verify(vault, read_data=True).ok


@pytest.mark.parametrize("how", ["--no-overwrite", "hard link"])
def test_bytes_left_alone_without_overwrite_or_with_another_name(
    tmp_path: Path, cli: Cli, how: str
) -> None:
    path = tmp_path / "vault"
    with Vault.init(path) as vault:
        snapshot_with(vault, ["job-0", "job-1"])
        image = vault.entry("job-1").images[0]
        assert image is not None
        seen = os.open(vault.object_path(image), os.O_RDONLY)
        if how == "hard link":  # a hard-linked backup of the vault is never damaged
            os.link(vault.object_path(image), tmp_path / "backup")
    options = ["--no-overwrite"] if how == "--no-overwrite" else []
    done = cli(path, "forget", "--job", "job-1", "--prune", "--grace", "0", *options)
    assert done.code == 0, done.err
    assert os.pread(seen, 1000, 0) == png_bytes(101, 300)
    os.close(seen)


def test_forgetting_reaches_a_checkout_view(tmp_path: Path, cli: Cli) -> None:
    path = tmp_path / "vault"
    with Vault.init(path) as vault:
        snapshot_with(vault, ["job-0", "job-1", "job-2"])
    view = tmp_path / "view"
    made = cli(path, "checkout", str(view), "--link", "hardlink")
    assert made.code == 0, made.err
    before = sorted(p for p in view.rglob("*") if p.is_file())
    assert len(before) == 3
    assert cli(path, "forget", "--job", "job-1", "--prune", "--grace", "0").code == 0
    after = sorted(p for p in view.rglob("*") if p.is_file())
    assert len(after) == 2 and set(after) < set(before)
    # The view's hard link went first, so the object's file had one name and was overwritten.
    assert png_bytes(101, 300) not in {p.read_bytes() for p in after}


def test_a_gc_killed_while_overwriting_leaves_a_valid_vault_and_the_next_finishes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mjvault.integrity.forget import forget_jobs
    from mjvault.integrity.gc import gc
    from mjvault.integrity.verify import verify

    with Vault.init(tmp_path / "vault") as vault:
        snapshot_with(vault, ["job-0", "job-1", "job-2"])
        image = vault.entry("job-1").images[0]
        assert image is not None
        seen = os.open(vault.object_path(image), os.O_RDONLY)
        forget_jobs(vault, ["job-1"])
        real = exclusions.overwrite

        def dies(path: str | os.PathLike[str]) -> None:
            raise KeyboardInterrupt  # where a kill -9 would land: the file is in tmp/

        monkeypatch.setattr(exclusions, "overwrite", dies)
        with pytest.raises(KeyboardInterrupt):
            gc(vault, grace_seconds=0)
        left = [p.name for p in vault.store.tmp_dir.iterdir()]
        assert len(left) == 1 and left[0].startswith("shred-")
        aside = os.open(vault.store.tmp_dir / left[0], os.O_RDONLY)
        aside_size = os.fstat(aside).st_size
        assert verify(vault, read_data=True).ok
        monkeypatch.setattr(exclusions, "overwrite", real)
        gc(vault, grace_seconds=0)
        assert list(vault.store.tmp_dir.iterdir()) == []
        assert os.pread(seen, 400, 0) == bytes(308)
        assert os.pread(aside, aside_size + 1, 0) == bytes(aside_size)
        os.close(aside)
        assert exclusions.read(vault).shred == set()
        assert verify(vault, read_data=True).ok
    os.close(seen)


@settings(max_examples=10, deadline=None)
@given(job_id=st.text(min_size=1, max_size=60))
def test_tokens_are_per_vault_and_stable(job_id: str) -> None:
    from mjvault.store.crypto import VaultKeys

    one, other = VaultKeys(b"\x01" * 32), VaultKeys(b"\x02" * 32)
    assert exclusions.token_of(one, job_id) == exclusions.token_of(VaultKeys(b"\x01" * 32), job_id)
    assert exclusions.token_of(one, job_id) != exclusions.token_of(other, job_id)
    assert exclusions.token_of(None, job_id) not in (
        exclusions.token_of(one, job_id),
        exclusions.token_of(other, job_id),
    )


@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_any_damage_to_the_file_is_found(
    tmp_path_factory: pytest.TempPathFactory, data: st.DataObject
) -> None:
    with Vault.init(tmp_path_factory.mktemp("v") / "vault") as vault:
        ids = data.draw(st.sets(st.text(min_size=1, max_size=20), min_size=1, max_size=8))
        exclusions.add(vault, ids, "job")
        path = vault.path / exclusions.LIST_FILE
        good = path.read_bytes()
        if data.draw(st.booleans()):
            at = data.draw(st.integers(0, len(good) - 1))
            bit = data.draw(st.integers(0, 7))
            bad = good[:at] + bytes([good[at] ^ (1 << bit)]) + good[at + 1 :]
        else:
            bad = good[: data.draw(st.integers(0, len(good) - 1))]
        path.write_bytes(bad)
        with pytest.raises(exclusions.ListDamaged):
            exclusions.load(vault)
        with pytest.raises(exclusions.ListDamaged):
            exclusions.read(vault)


OVERWRITING_GC = """
import sys, time
from pathlib import Path
from mjvault import Vault
from mjvault.integrity import exclusions
from mjvault.integrity.gc import gc

started = Path(sys.argv[2])
real = exclusions.overwrite
def noted(path):  # a pause per file: kills land between and inside the overwrites
    started.touch()
    time.sleep(0.1)  # long enough that a parent slowed by a busy machine still lands inside
    real(path)
exclusions.overwrite = noted
gc(Vault.open(sys.argv[1]), grace_seconds=0)
"""


@pytest.mark.slow
def test_kill_9_while_gc_overwrites_never_damages_the_vault(tmp_path: Path) -> None:
    import random
    import shutil
    import signal
    import subprocess
    import sys
    import time

    from mjvault.integrity.forget import forget_jobs
    from mjvault.integrity.gc import gc
    from mjvault.integrity.verify import verify

    template = tmp_path / "template"
    with Vault.init(template) as vault:
        with vault.writer("test") as writer:
            for n in range(12):
                image = writer.put_media(png_bytes(n, 4 << 20))  # overwriting takes a while
                writer.add_job(record_json(f"job-{n}", f"fox {n}"), [image])
        forget_jobs(vault, [f"job-{n}" for n in range(2, 12)])
    rng = random.Random(14)
    work, started = tmp_path / "work", tmp_path / "started"
    kills = leftovers = 0
    for _ in range(6):
        shutil.rmtree(work, ignore_errors=True)
        shutil.copytree(template, work, symlinks=True)  # copies: every file has one name
        started.unlink(missing_ok=True)
        child = subprocess.Popen([sys.executable, "-c", OVERWRITING_GC, str(work), str(started)])
        while not started.exists() and child.poll() is None:
            time.sleep(0.001)
        time.sleep(rng.uniform(0, 0.2))
        child.send_signal(signal.SIGKILL)
        kills += child.wait() == -signal.SIGKILL
        aside = [p for p in (work / "tmp").glob("shred-*")] if (work / "tmp").is_dir() else []
        seen = [(os.open(p, os.O_RDONLY), p.stat().st_size) for p in aside]
        leftovers += len(aside)
        with Vault.open(work) as vault:
            assert verify(vault, read_data=True).ok
            assert {e.job_id for e in vault.entries()} == {"job-0", "job-1"}
            report = gc(vault, grace_seconds=0)
            for fd, size in seen:  # what the killed gc left aside was overwritten now
                assert os.pread(fd, size + 1, 0) == bytes(size)
                os.close(fd)
            assert not report.notes or "overwrote" in report.notes[0]
            assert not vault.store.tmp_dir.exists() or not any(vault.store.tmp_dir.iterdir())
            assert exclusions.read(vault).shred == set()
            assert verify(vault, read_data=True).ok
    assert kills >= 3 and leftovers  # the kills landed while gc overwrote, not after
