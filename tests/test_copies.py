"""What each remote holds: the push record, the numcopies guard of forget and gc, `remote
info`, and `key passwd --remote` — on folders and on moto's S3 server (real CLI, real
storage)."""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest

from mjvault import Vault
from mjvault.errors import WrongPassphrase
from mjvault.remotes.clone import clone
from mjvault.remotes.config import RemoteSpec, normalise_url, open_backend
from mjvault.remotes.push import push
from mjvault.remotes.record import load_record, record_path
from mjvault.remotes.remote import KEYS_PREFIX, read_info, unlock_remote
from mjvault.remotes.session import add_remote, connect
from mjvault.testing.httpd import QuietHTTPServer
from mjvault.testing.objectstore import MotoServer, moto_executable
from tests.conftest import CHEAP_KDF, PASSPHRASE, png_bytes, record_json, run_cli

NEW_PASSPHRASE = "a brand new remote passphrase"


@pytest.fixture(params=["folder", "s3"])
def spec(request: pytest.FixtureRequest, tmp_path: Path) -> RemoteSpec:
    if request.param == "folder":
        return RemoteSpec("offsite", normalise_url(str(tmp_path / "remote")))
    if moto_executable() is None:
        pytest.skip("moto[server] not installed")
    moto: MotoServer = request.getfixturevalue("moto")
    return moto.spec("offsite")


def snapshot_with(vault: Vault, start: int, count: int = 3) -> str:
    with vault.writer("test") as writer:
        for n in range(start, start + count):
            image = writer.put_media(png_bytes(n, 300))
            writer.add_job(record_json(f"job-{n}", f"prompt {n} fox"), [image, None])
    head = vault.head()
    assert head is not None
    return head.id


def push_to(vault: Vault, spec: RemoteSpec):  # type: ignore[no-untyped-def]
    with connect(vault, spec, passphrase=PASSPHRASE, kdf=CHEAP_KDF) as link:
        return push(vault, link)


def cli(vault: Vault, *args: str, passphrase: Path | None = None):  # type: ignore[no-untyped-def]
    pre = ("--vault", str(vault.path))
    if passphrase is not None:
        pre += ("--passphrase-file", str(passphrase))
    return run_cli(*pre, *args)


@pytest.fixture
def three(tmp_path: Path, spec: RemoteSpec):  # type: ignore[no-untyped-def]
    """A vault with remote ``offsite`` holding s1 only; s2 and s3 (HEAD) are local alone."""
    vault = Vault.init(tmp_path / "vault")
    s1 = snapshot_with(vault, 0)
    add_remote(vault, spec)
    assert push_to(vault, spec).ok
    s2 = snapshot_with(vault, 10)
    s3 = snapshot_with(vault, 20)
    yield vault, spec, (s1, s2, s3)
    vault.close()


# -- the record ------------------------------------------------------------------------------
def test_a_push_records_what_the_remote_holds(three) -> None:  # type: ignore[no-untyped-def]
    vault, spec, (s1, s2, s3) = three
    record = load_record(vault.path, spec.name)
    assert record is not None and record.snapshots == {s1}
    assert record.last_push is not None and record.last_push["snapshots_sent"] == 1
    assert oct(record_path(vault.path, spec.name).stat().st_mode & 0o777) == "0o600"
    report = push_to(vault, spec)
    record = load_record(vault.path, spec.name)
    assert record is not None and record.snapshots == {s1, s2, s3}
    assert record.last_push is not None
    assert record.last_push["objects_sent"] == report.objects_sent > 0
    # Lost or damaged, it is rebuilt whole by the next push, even one that sends nothing.
    record_path(vault.path, spec.name).write_bytes(b"{not json")
    assert load_record(vault.path, spec.name) is None
    assert push_to(vault, spec).objects_sent == 0
    record = load_record(vault.path, spec.name)
    assert record is not None and record.snapshots == {s1, s2, s3}


def test_an_encrypting_remote_is_recorded_in_the_vaults_ids(tmp_path: Path) -> None:
    vault = Vault.init(tmp_path / "vault")
    ids = {snapshot_with(vault, 0), snapshot_with(vault, 10)}
    spec = RemoteSpec("sealed", normalise_url(str(tmp_path / "remote")), encrypt=True)
    add_remote(vault, spec, passphrase=PASSPHRASE, kdf=CHEAP_KDF)
    assert push_to(vault, spec).ok
    on_remote = {p.name for p in (tmp_path / "remote" / "snapshots").iterdir()}
    assert len(on_remote) == 2 and not on_remote & ids  # translated there…
    record = load_record(vault.path, "sealed")
    assert record is not None and record.snapshots == ids  # …and in the vault's ids here
    assert record.foreign_snapshots == 0
    vault.close()


def test_pull_refreshes_the_record(three) -> None:  # type: ignore[no-untyped-def]
    from mjvault.remotes.pull import pull

    vault, spec, (s1, _, _) = three
    record_path(vault.path, spec.name).unlink()
    with connect(vault, spec) as link:
        assert pull(vault, link).ok
    record = load_record(vault.path, spec.name)
    assert record is not None and record.snapshots == {s1} and record.last_push is None


# -- the guard -------------------------------------------------------------------------------
def test_forget_refuses_to_drop_a_snapshot_no_remote_holds_until_pushed(three) -> None:  # type: ignore[no-untyped-def]
    vault, spec, (s1, s2, s3) = three
    refused = cli(vault, "forget", "--keep-last", "1")
    assert refused.returncode == 1
    line = refused.stderr.decode()
    assert line.count("\n") == 1 and s2[:12] in line and s1[:12] not in line
    assert f"mjvault push {spec.name}" in line and "--force" in line
    assert set(vault.refs.snapshot_ids()) == {s1, s2, s3}

    as_json = cli(vault, "--json", "forget", "--keep-last", "1")
    assert as_json.returncode == 1
    doc = json.loads(as_json.stdout)
    assert doc["copies"]["snapshots"] == [s2] and doc["copies"]["push_to"] == spec.name

    planned = cli(vault, "--json", "forget", "--keep-last", "1", "--dry-run")
    assert planned.returncode == 0, planned.stderr
    assert json.loads(planned.stdout)["copies"]["snapshots"] == [s2]
    human = cli(vault, "forget", "--keep-last", "1", "--dry-run")
    assert b"would refuse" in human.stderr and s2[:12].encode() in human.stderr
    assert set(vault.refs.snapshot_ids()) == {s1, s2, s3}

    assert cli(vault, "push", spec.name).returncode == 0
    done = cli(vault, "--json", "forget", "--keep-last", "1", "--prune", "--grace", "0")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["copies"]["ok"] is True
    assert vault.refs.snapshot_ids() == [s3]
    assert not vault.store.exists(s1) and not vault.store.exists(s2)


def test_force_drops_it_and_gc_does_not_ask_again(three) -> None:  # type: ignore[no-untyped-def]
    vault, _, (s1, s2, s3) = three
    forced = cli(vault, "forget", s2, "--force")
    assert forced.returncode == 0, forced.stderr
    assert b"forced" in forced.stderr and s2[:12].encode() in forced.stderr
    assert set(vault.refs.snapshot_ids()) == {s1, s3}
    swept = cli(vault, "--json", "gc", "--grace", "0")
    assert swept.returncode == 0, swept.stderr
    assert not vault.store.exists(s2) and vault.store.exists(s1)
    # The released list is tidied once the manifest is gone.
    assert not (vault.path / "remotes" / "_released").read_text().strip()


def test_gc_refuses_to_drop_a_forgotten_snapshot_it_cannot_place_offsite(three) -> None:  # type: ignore[no-untyped-def]
    vault, spec, (s1, _, s3) = three
    assert cli(vault, "forget", s1).returncode == 0  # s1 is on the remote: allowed
    record_path(vault.path, spec.name).unlink()  # …but this vault no longer knows it
    refused = cli(vault, "gc", "--grace", "0")
    assert refused.returncode == 1 and refused.stderr.count(b"\n") == 1
    assert s1[:12].encode() in refused.stderr and f"push {spec.name}".encode() in refused.stderr
    assert vault.store.exists(s1)
    planned = cli(vault, "--json", "gc", "--grace", "0", "--dry-run")
    assert planned.returncode == 0 and json.loads(planned.stdout)["copies"]["snapshots"] == [s1]
    # A push lists the remote's markers again, and gc may go on.
    assert cli(vault, "push", spec.name).returncode == 0
    swept = cli(vault, "gc", "--grace", "0")
    assert swept.returncode == 0, swept.stderr
    assert not vault.store.exists(s1) and vault.store.exists(s3)


def test_gc_force_overrides(three) -> None:  # type: ignore[no-untyped-def]
    vault, spec, (s1, _, _) = three
    assert cli(vault, "forget", s1).returncode == 0
    record_path(vault.path, spec.name).unlink()
    assert cli(vault, "gc", "--grace", "0").returncode == 1
    forced = cli(vault, "gc", "--grace", "0", "--force")
    assert forced.returncode == 0, forced.stderr
    assert not vault.store.exists(s1)


def test_young_forgotten_snapshots_are_not_asked_about(three) -> None:  # type: ignore[no-untyped-def]
    vault, spec, (s1, _, _) = three
    assert cli(vault, "forget", s1).returncode == 0
    record_path(vault.path, spec.name).unlink()
    kept = cli(vault, "--json", "gc")  # 1 h grace: the manifest is kept anyway
    assert kept.returncode == 0 and json.loads(kept.stdout)["copies"]["ok"] is True


def test_forget_job_is_not_guarded_and_gc_takes_what_it_replaced(three) -> None:  # type: ignore[no-untyped-def]
    vault, _, (s1, s2, s3) = three
    done = cli(vault, "forget", "--job", "job-10")
    assert done.returncode == 0, done.stderr
    assert not {s2, s3} & set(vault.refs.snapshot_ids())
    swept = cli(vault, "gc", "--grace", "0")
    assert swept.returncode == 0, swept.stderr
    assert not vault.store.exists(s2) and not vault.store.exists(s3)


def test_a_vault_without_remotes_is_not_guarded(tmp_path: Path) -> None:
    vault = Vault.init(tmp_path / "vault")
    first = snapshot_with(vault, 0)
    snapshot_with(vault, 10)
    done = cli(vault, "--json", "forget", "--keep-last", "1", "--prune", "--grace", "0")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["copies"] is None
    assert not vault.store.exists(first)
    assert not (vault.path / "remotes").exists()
    vault.close()


def test_the_remote_holding_most_is_named(tmp_path: Path) -> None:
    vault = Vault.init(tmp_path / "vault")
    s1 = snapshot_with(vault, 0)
    near = RemoteSpec("near", normalise_url(str(tmp_path / "near")))
    far = RemoteSpec("far", normalise_url(str(tmp_path / "far")))
    add_remote(vault, far)
    assert push_to(vault, far).ok  # far: s1
    s2 = snapshot_with(vault, 10)
    add_remote(vault, near)
    assert push_to(vault, near).ok  # near: s1, s2
    snapshot_with(vault, 20)
    snapshot_with(vault, 30)
    refused = cli(vault, "forget", "--keep-last", "1")
    assert refused.returncode == 1 and b"mjvault push near" in refused.stderr
    assert cli(vault, "forget", s1, s2).returncode == 0  # each held by some remote
    vault.close()


# -- remote info -----------------------------------------------------------------------------
def test_remote_info_counts_what_is_there(three) -> None:  # type: ignore[no-untyped-def]
    vault, spec, (s1, s2, s3) = three
    report = push_to(vault, spec)
    shown = cli(vault, "--json", "remote", "info", spec.name)
    assert shown.returncode == 0, shown.stderr
    doc = json.loads(shown.stdout)
    counted: Counter[str] = Counter()
    sizes: Counter[str] = Counter()
    backend = open_backend(spec)
    try:
        for key in backend.list(""):
            kind = key.split("/")[0] if "/" in key else "other"
            counted[kind] += 1
            sizes[kind] += len(backend.get(key))
        info = read_info(backend)
    finally:
        backend.close()
    assert info is not None
    for kind in ("objects", "packs", "snapshots", "keys"):
        assert doc[kind] == {"count": counted[kind], "bytes": sizes[kind]}, kind
    assert doc["snapshots"]["count"] == 3 and doc["packs"]["count"] >= 1
    assert doc["total"]["count"] == sum(counted.values())
    assert doc["total"]["bytes"] == sum(sizes.values())
    assert doc["remote_id"] == info.id and doc["format_version"] == info.version
    assert doc["encryption"] is None and doc["url"] == spec.url
    assert doc["last_push"]["objects_sent"] == report.objects_sent
    assert doc["local_snapshots"] == 3 and doc["local_snapshots_held"] == 3
    human = cli(vault, "remote", "info", spec.name)
    assert human.returncode == 0 and b"last push:" in human.stdout
    assert b"holds 3 of this vault's 3 snapshots" in human.stdout


def test_remote_info_of_a_new_remote_and_of_an_unknown_one(tmp_path: Path) -> None:
    vault = Vault.init(tmp_path / "vault")
    spec = RemoteSpec("sealed", normalise_url(str(tmp_path / "remote")), encrypt=True)
    add_remote(vault, spec, passphrase=PASSPHRASE, kdf=CHEAP_KDF)
    shown = cli(vault, "--json", "remote", "info", "sealed")  # no passphrase needed
    assert shown.returncode == 0, shown.stderr
    doc = json.loads(shown.stdout)
    assert doc["encryption"]["cipher"] == "aes-256-gcm" and doc["clone_as"] == "plain"
    assert doc["keys"]["count"] == 1 and doc["snapshots"]["count"] == 0
    assert doc["last_push"] is None and doc["local_snapshots_held"] is None
    assert cli(vault, "remote", "info", "nowhere").returncode == 2
    vault.close()


# -- key passwd --remote ---------------------------------------------------------------------
def _encrypting(tmp_path: Path, spec: RemoteSpec) -> tuple[Vault, RemoteSpec, Path, Path]:
    vault = Vault.init(tmp_path / "vault")
    snapshot_with(vault, 0)
    spec = RemoteSpec(**{**spec.to_json(), "encrypt": True})  # type: ignore[arg-type]
    add_remote(vault, spec, passphrase=PASSPHRASE, kdf=CHEAP_KDF)
    assert push_to(vault, spec).ok
    old, new = tmp_path / "old-pass", tmp_path / "new-pass"
    old.write_text(PASSPHRASE + "\n")
    new.write_text(NEW_PASSPHRASE + "\n")
    return vault, spec, old, new


def test_key_passwd_remote_then_clone_opens_with_the_new_passphrase_only(
    spec: RemoteSpec, tmp_path: Path
) -> None:
    vault, spec, old, new = _encrypting(tmp_path, spec)
    head = vault.refs.head()
    changed = cli(
        vault, "--json", "key", "passwd", "--remote", spec.name, "--new-passphrase-file", str(new),
        passphrase=old,
    )  # fmt: skip
    assert changed.returncode == 0, changed.stderr
    assert PASSPHRASE.encode() not in changed.stdout + changed.stderr
    doc = json.loads(changed.stdout)
    assert doc["mode"] == "passphrase" and len(doc["added"]) == len(doc["removed"]) == 1
    with pytest.raises(WrongPassphrase):
        clone(spec, tmp_path / "old-clone", passphrase=PASSPHRASE)
    copy, report = clone(spec, tmp_path / "new-clone", passphrase=NEW_PASSPHRASE)
    assert report.ok and copy.refs.head() == head
    copy.close()
    # The same secret: this vault's id map stays right and the next push sends only news.
    snapshot_with(vault, 10)
    with connect(vault, spec, passphrase=NEW_PASSPHRASE) as link:
        again = push(vault, link)
    assert again.ok and again.snapshots_sent == 1 and again.objects_skipped > 0
    wrong = cli(
        vault, "key", "passwd", "--remote", spec.name, "--new-passphrase-file", str(old),
        passphrase=old,
    )  # fmt: skip
    assert wrong.returncode == 12 and wrong.stderr.count(b"\n") == 1
    vault.close()


def test_key_passwd_remote_of_a_plain_remote_is_refused(tmp_path: Path) -> None:
    vault = Vault.init(tmp_path / "vault")
    add_remote(vault, RemoteSpec("plain", normalise_url(str(tmp_path / "remote"))))
    new = tmp_path / "new-pass"
    new.write_text(NEW_PASSPHRASE)
    refused = cli(vault, "key", "passwd", "--remote", "plain", "--new-passphrase-file", str(new))
    assert refused.returncode == 1 and b"no passphrase" in refused.stderr
    vault.close()


def test_key_passwd_remote_of_an_encrypted_vault_mirrors_its_key_files(tmp_path: Path) -> None:
    vault = Vault.init(tmp_path / "vault", encrypt=True, passphrase=PASSPHRASE, kdf=CHEAP_KDF)
    snapshot_with(vault, 0)
    spec = RemoteSpec("offsite", normalise_url(str(tmp_path / "remote")))
    add_remote(vault, spec)
    assert push_to(vault, spec).ok
    old, new = tmp_path / "old-pass", tmp_path / "new-pass"
    old.write_text(PASSPHRASE)
    new.write_text(NEW_PASSPHRASE)
    path = str(vault.path)
    vault.close()
    changed = run_cli(
        "--vault", path, "--passphrase-file", str(old), "key", "passwd",
        "--new-passphrase-file", str(new),
    )  # fmt: skip
    assert changed.returncode == 0, changed.stderr
    # A push adds the new key file but keeps the old: the old passphrase still opens it.
    assert (
        run_cli("--vault", path, "--passphrase-file", str(new), "push", "offsite").returncode == 0
    )
    assert len(list((tmp_path / "remote" / "keys").iterdir())) == 2
    mirrored = run_cli(
        "--vault", path, "--passphrase-file", str(new), "--json", "key", "passwd",
        "--remote", "offsite",
    )  # fmt: skip
    assert mirrored.returncode == 0, mirrored.stderr
    doc = json.loads(mirrored.stdout)
    assert doc["mode"] == "mirrored" and len(doc["removed"]) == 1 and not doc["added"]
    local = {p.name for p in (Path(path) / "keys").iterdir()}
    assert {p.name for p in (tmp_path / "remote" / "keys").iterdir()} == local
    with pytest.raises(WrongPassphrase):
        clone(spec, tmp_path / "old-clone", passphrase=PASSPHRASE)
    copy, report = clone(spec, tmp_path / "new-clone", passphrase=NEW_PASSPHRASE)
    assert report.ok and copy.encrypted
    copy.close()


class _HangingKeyDeletes:
    """A proxy to moto that forwards every request but a delete of a key file, which it
    holds unanswered (setting ``reached``) until the proxy stops."""

    def __init__(self, upstream_port: int) -> None:
        from mjvault.testing.objectstore import free_port

        self.reached = threading.Event()
        self.release = threading.Event()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _forward(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                # obstore deletes with a multi-object POST ?delete naming the keys in its body.
                deleting = self.command == "DELETE" or "?delete" in self.path
                if deleting and (f"/{KEYS_PREFIX}" in self.path or KEYS_PREFIX.encode() in body):
                    proxy.reached.set()
                    proxy.release.wait(60)
                    self.close_connection = True
                    return
                conn = http.client.HTTPConnection("127.0.0.1", upstream_port, timeout=60)
                try:
                    conn.request(self.command, self.path, body=body, headers=dict(self.headers))
                    response = conn.getresponse()
                    data = response.read()
                finally:
                    conn.close()
                self.send_response(response.status)
                for key, value in response.getheaders():
                    if key.lower() not in ("transfer-encoding", "connection", "content-length"):
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _forward

        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.server = QuietHTTPServer(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.mark.skipif(moto_executable() is None, reason="moto[server] not installed")
def test_kill_9_between_the_new_key_file_and_the_delete_leaves_both_passphrases(
    moto: MotoServer, tmp_path: Path
) -> None:
    proxy = _HangingKeyDeletes(moto.port)
    try:
        spec = moto.spec("cloud", endpoint_url=proxy.endpoint)
        vault, spec, old, new = _encrypting(tmp_path, spec)
        env = {k: v for k, v in os.environ.items() if not k.startswith("MJVAULT_")}
        child = subprocess.Popen(
            [sys.executable, "-m", "mjvault", "--vault", str(vault.path),
             "--passphrase-file", str(old), "key", "passwd", "--remote", "cloud",
             "--new-passphrase-file", str(new)],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )  # fmt: skip
        try:
            if not proxy.reached.wait(60):
                child.kill()
                raise AssertionError(f"no key file deleted: {child.communicate()[1]!r}")
            os.kill(child.pid, signal.SIGKILL)
        finally:
            child.wait(30)
        assert child.returncode == -signal.SIGKILL
    finally:
        proxy.stop()
    direct = RemoteSpec(**{**spec.to_json(), "endpoint_url": moto.endpoint})  # type: ignore[arg-type]
    backend = open_backend(direct)
    try:
        info = read_info(backend)
        assert info is not None
        assert len(list(backend.list(KEYS_PREFIX))) == 2
        assert unlock_remote(backend, info, PASSPHRASE).naming_key == (
            unlock_remote(backend, info, NEW_PASSPHRASE).naming_key
        )
    finally:
        backend.close()
    # Run again with the same passphrases: it finishes, and only the new one opens it.
    from mjvault.remotes.config import save_spec

    save_spec(vault.path, direct)
    again = cli(
        vault, "key", "passwd", "--remote", "cloud", "--new-passphrase-file", str(new),
        passphrase=old,
    )  # fmt: skip
    assert again.returncode == 0, again.stderr
    with pytest.raises(WrongPassphrase):
        clone(direct, tmp_path / "old-clone", passphrase=PASSPHRASE)
    copy, report = clone(direct, tmp_path / "new-clone", passphrase=NEW_PASSPHRASE)
    assert report.ok and copy.refs.head() == vault.refs.head()
    copy.close()
    vault.close()


def test_an_unreadable_snapshot_is_no_copy_to_protect(three) -> None:  # type: ignore[no-untyped-def]
    vault, _, (s1, s2, s3) = three
    (vault.path / "objects" / s2[:2] / s2).unlink()
    done = cli(vault, "forget", s2)
    assert done.returncode == 0, done.stderr
    assert set(vault.refs.snapshot_ids()) == {s1, s3}


def test_a_prune_on_the_remote_takes_its_snapshots_out_of_the_record(three) -> None:  # type: ignore[no-untyped-def]
    """What `forget --remote` removed there is no copy the local guard may count on."""
    vault, spec, (s1, s2, s3) = three
    assert push_to(vault, spec).ok
    forgot = cli(vault, "forget", "--remote", spec.name, "--keep-last", "1")
    assert forgot.returncode == 0, forgot.stderr
    record = load_record(vault.path, spec.name)
    assert record is not None and record.snapshots == {s3}
    # So the vault's own s1 and s2 are now its last copies again.
    refused = cli(vault, "forget", "--keep-last", "1")
    assert refused.returncode == 1 and s1[:12].encode() in refused.stderr
