"""Azure Blob remotes on Azurite (the Azure Storage emulator, a real HTTP service on 127.0.0.1),
and the az:// and gs:// URL forms. GCS round trips need a real bucket: see the last section.
"""

from __future__ import annotations

import base64
import json
import os
import threading
from pathlib import Path

import pytest
from config_helpers import Result, isolate
from config_helpers import run_cli as run_in_process
from hypothesis import given, settings
from hypothesis import strategies as st

from mjvault import Vault
from mjvault.errors import ConfigError
from mjvault.remotes.backend import RemoteAuthError, RemoteError
from mjvault.remotes.clone import clone
from mjvault.remotes.config import (
    RemoteSpec,
    check_spec,
    open_backend,
    parse_remote_url,
)
from mjvault.remotes.pull import pull
from mjvault.remotes.push import push
from mjvault.remotes.remote import object_key
from mjvault.remotes.session import connect
from mjvault.remotes.verify import verify_remote
from mjvault.testing import azurite as azurite_service
from mjvault.testing.azurite import ACCOUNT, ACCOUNT_KEY, Azurite
from mjvault.testing.objectstore import FaultProxy
from tests.conftest import CHEAP_KDF, PASSPHRASE, png_bytes, record_json, run_cli, service_missing

# -- URL forms ------------------------------------------------------------------------------
GOOD = [
    ("az://box/mj", "az://box/mj"),
    ("azure://box/mj/", "az://box/mj"),
    ("AZ://my-container", "az://my-container"),
    ("az://123/a/b c/d", "az://123/a/b c/d"),
    ("gs://my_bucket.example.com/mj", "gs://my_bucket.example.com/mj"),
    ("GS://b-1/x/", "gs://b-1/x"),
    ("gs://" + "a" * 63, "gs://" + "a" * 63),
    ("gs://" + ".".join(["a" * 60] * 3), "gs://" + ".".join(["a" * 60] * 3)),
]

BAD = [
    ("az://", "container"),
    ("az:///mj", "container"),
    ("az://ab/mj", "container name"),
    ("az://Box/mj", "container name"),
    ("az://my_box/mj", "container name"),
    ("az://a--b/mj", "'--'"),
    ("az://box-/mj", "container name"),
    ("az://my.box/mj", "container name"),
    ("az://127.0.0.1:10000/box", "--endpoint-url"),
    ("az://box/../x", "'..'"),
    ("az://box/a/./b", "'.'"),
    ("az://box//mj", "empty"),
    ("az://box/mj?sv=2020&sig=x", "'?'"),
    ("az://box/m\\j", "backslash"),
    ("az:box/mj", "az://container"),
    ("azure:/box", "azure://container"),
    ("gs://", "bucket"),
    ("gs://ab", "bucket name"),
    ("gs://Bucket", "bucket name"),
    ("gs://-bucket", "bucket name"),
    ("gs://a..b", "bucket name"),
    ("gs://" + "a" * 64, "bucket name"),
    ("gs://" + ".".join(["a" * 64, "b"]), "bucket name"),
    ("gs://goog-archive", "goog"),
    ("gs://my-google-archive", "google"),
    ("gs://192.168.1.10", "IP address"),
    ("gs://bucket/a/./b", "'.'"),
    ("gs://bucket/mj#x", "'#'"),
    ("gs:bucket", "gs://bucket"),
]


@pytest.mark.parametrize(("url", "stored"), GOOD)
def test_good_azure_and_gcs_urls_parse_to_their_stored_form(url: str, stored: str) -> None:
    assert str(parse_remote_url(url)) == stored
    assert str(parse_remote_url(stored)) == stored


@pytest.mark.parametrize(("url", "why"), BAD)
def test_bad_azure_and_gcs_urls_are_one_line(url: str, why: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_remote_url(url)
    assert why in caught.value.message and "\n" not in caught.value.message


@pytest.mark.parametrize("url", ["az://acct:c2VjcmV0@box/mj", "gs://k:c2VjcmV0@bucket/mj"])
def test_credentials_in_a_url_are_refused_without_echoing_them(url: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_remote_url(url)
    message = caught.value.message
    assert "c2VjcmV0" not in message
    assert ("AZURE_STORAGE_ACCOUNT_KEY" if url.startswith("az") else "GOOGLE_") in message


_CONTAINER = st.from_regex(r"[a-z0-9]([a-z0-9]|-(?=[a-z0-9])){2,40}", fullmatch=True)
_GCS_BUCKET = st.from_regex(
    r"[a-z0-9][a-z0-9_-]{1,20}(\.[a-z0-9_-]{1,20})?[a-z0-9]", fullmatch=True
)
_SEGMENT = st.text(
    st.characters(codec="utf-8", exclude_characters="/\\?#"), min_size=1, max_size=12
).filter(lambda s: s not in (".", "..") and s.strip() == s and s.isprintable())


@given(st.sampled_from(["az", "azure", "gs"]), st.data(), st.lists(_SEGMENT, max_size=4))
def test_valid_object_store_urls_round_trip(
    scheme: str, data: st.DataObject, path: list[str]
) -> None:
    name = data.draw(_GCS_BUCKET if scheme == "gs" else _CONTAINER)
    if scheme == "gs" and (name.startswith("goog") or "google" in name):
        return
    parsed = parse_remote_url(f"{scheme}://" + "/".join([name, *path]))
    stored = "gs" if scheme == "gs" else "az"
    assert (parsed.scheme, parsed.bucket, parsed.path) == (stored, name, "/".join(path))
    assert parse_remote_url(str(parsed)) == parsed
    assert str(parsed) == f"{stored}://" + "/".join([name, *path])


@settings(max_examples=300)
@given(
    st.sampled_from(["az://", "azure://", "gs://", "AZ:/", "gs:"]),
    st.text(st.sampled_from("abg-_.o/:@?#%\\ \x00\n"), max_size=30),
)
def test_no_object_store_url_that_parses_escapes(head: str, body: str) -> None:
    try:
        parsed = parse_remote_url(head + body)
    except ConfigError as exc:
        assert "\n" not in exc.message
        return
    assert parsed.scheme in ("az", "gs")
    assert parse_remote_url(str(parsed)) == parsed
    assert len(parsed.bucket) >= 3 and "@" not in str(parsed) and ":" not in parsed.bucket
    segments = parsed.path.split("/")
    assert not set(segments) & {".", ".."} and ("" not in segments or parsed.path == "")
    assert not any(c in str(parsed) for c in "\x00\n\\?#")


def test_each_scheme_takes_only_its_own_options() -> None:
    endpoint = "http://127.0.0.1:10000/devstoreaccount1"
    assert check_spec(RemoteSpec("a", "azure://box/mj", endpoint_url=endpoint)).url == "az://box/mj"
    assert check_spec(RemoteSpec("g", "gs://bucket", endpoint_url="http://h:1", allow_http=True))
    for url in ("az://box/mj", "gs://bucket/mj"):
        for option, field in (
            ("--region", {"region": "eu-west-1"}),
            ("--virtual-hosted", {"virtual_hosted": True}),
        ):
            with pytest.raises(ConfigError) as caught:
                check_spec(RemoteSpec("x", url, **field))  # type: ignore[arg-type]
            assert caught.value.message.startswith(f"{option} go with s3:// remotes, not")
    with pytest.raises(ConfigError) as caught:
        check_spec(RemoteSpec("x", "/mnt/nas", endpoint_url=endpoint))
    assert "--endpoint-url go with s3://, az://, gs:// remotes, not folders" in caught.value.message


def test_a_sas_token_in_an_endpoint_is_refused_without_echoing_it() -> None:
    endpoint = "https://acct.blob.core.windows.net/?sv=2022-11-02&sig=c2VjcmV0"
    with pytest.raises(ConfigError) as caught:
        check_spec(RemoteSpec("x", "az://box/mj", endpoint_url=endpoint))
    assert "c2VjcmV0" not in caught.value.message
    assert "AZURE_STORAGE_ACCOUNT_KEY" in caught.value.message


@pytest.fixture
def world(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    isolate(monkeypatch, tmp_path)
    Vault.init(tmp_path / "vault").close()
    return tmp_path


def one_line(result: Result, code: int) -> str:
    assert result.code == code, result
    assert "Traceback" not in result.err
    lines = result.err.splitlines()
    assert len(lines) == 1, result.err
    return lines[0]


@pytest.mark.parametrize(
    ("args", "why"),
    [
        (["az://Box/mj"], "container name"),
        (["gs://goog-x/mj"], "goog"),
        (["az://box/mj", "--region", "eu-west-1"], "--region go with s3://"),
        (["gs://bucket/mj", "--virtual-hosted"], "--virtual-hosted go with s3://"),
    ],
)
def test_remote_add_refuses_bad_azure_and_gcs_remotes(
    world: Path, capsys: pytest.CaptureFixture[str], args: list[str], why: str
) -> None:
    result = run_in_process(capsys, "--vault", str(world / "vault"), "remote", "add", "x", *args)
    assert why in one_line(result, 2)
    assert not (world / "vault" / "remotes" / "x.json").exists()


# -- Azurite: the backend -------------------------------------------------------------------
def test_create_only_put_is_enforced_by_azure(azurite: Azurite) -> None:
    backend = open_backend(azurite.spec())
    assert backend.put("config", b"first", create_only=True)
    assert not backend.put("config", b"second", create_only=True)
    assert backend.get("config") == b"first"
    winners: list[int] = []
    barrier = threading.Barrier(8)

    def race(n: int) -> None:
        barrier.wait()
        if backend.put("snapshots/x", str(n).encode(), create_only=True):
            winners.append(n)

    threads = [threading.Thread(target=race, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(winners) == 1
    assert backend.get("snapshots/x") == str(winners[0]).encode()


def test_azure_reads_ranges_lists_and_deletes(azurite: Azurite) -> None:
    backend = open_backend(azurite.spec())
    data = bytes(range(256)) * 40
    backend.put("packs/ab/p1", data)
    backend.put("packs/cd/p2", b"x")
    backend.put("objects/ab/o1", b"y")
    assert backend.get_range("packs/ab/p1", 10, 20) == data[10:20]
    assert backend.get_tail("packs/ab/p1", 100) == (data[-100:], len(data))
    assert sorted(backend.list("packs/")) == ["packs/ab/p1", "packs/cd/p2"]
    assert backend.exists("objects/ab/o1") and not backend.exists("objects/ab/o2")
    backend.delete("objects/ab/o1")
    backend.delete("objects/ab/o1")  # absent keys are not an error
    assert list(backend.list("objects/")) == []
    # The prefix is the remote's root: nothing lands beside it in the container.
    whole = open_backend(
        RemoteSpec("w", backend.describe().rsplit("/", 1)[0], endpoint_url=azurite.endpoint)
    )
    assert sorted(whole.list("")) == ["mj/packs/ab/p1", "mj/packs/cd/p2"]


def test_a_missing_container_is_named(azurite: Azurite) -> None:
    spec = RemoteSpec("x", "az://never-made/mj", endpoint_url=azurite.endpoint)
    backend = open_backend(spec)
    for call in (
        lambda: list(backend.list("")),
        lambda: backend.put("k", b"v"),
        lambda: backend.get("k"),
    ):
        with pytest.raises(RemoteError) as caught:
            call()
        assert caught.value.message == "az://never-made/mj: the container never-made does not exist"


def test_no_account_in_the_environment_is_one_line(
    azurite: Azurite, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = azurite.spec()
    monkeypatch.delenv("AZURE_STORAGE_ACCOUNT_NAME")
    with pytest.raises(ConfigError) as caught:
        open_backend(spec)
    assert "no storage account" in caught.value.message
    assert "AZURE_STORAGE_ACCOUNT_NAME" in (caught.value.hint or "")


# -- Azurite: round trips -------------------------------------------------------------------
def add_jobs(vault: Vault, count: int, start: int = 0) -> None:
    with vault.writer("test") as writer:
        for n in range(start, start + count):
            image = writer.put_media(png_bytes(n))
            writer.add_job(record_json(f"job-{n}", f"prompt {n} fox"), [image, None])


def state(vault: Vault) -> dict[str, tuple[bytes, list[bytes]]]:
    return {
        e.job_id: (vault.record_json(e), [vault.read_object(i) for i in e.images if i])
        for e in vault.entries()
    }


def push_to(vault: Vault, spec: RemoteSpec):  # type: ignore[no-untyped-def]
    with connect(vault, spec, passphrase=PASSPHRASE, create=True, kdf=CHEAP_KDF) as link:
        return push(vault, link)


@pytest.mark.parametrize("kind", ["plain", "encrypted-vault", "encrypting-remote"])
def test_push_clone_pull_and_verify_on_azurite(kind: str, azurite: Azurite, tmp_path: Path) -> None:
    if kind == "encrypted-vault":
        source = Vault.init(tmp_path / "src", encrypt=True, passphrase=PASSPHRASE, kdf=CHEAP_KDF)
    else:
        source = Vault.init(tmp_path / "src")
    spec = azurite.spec(encrypt=kind == "encrypting-remote")
    add_jobs(source, 130)  # more than one leaf: an inner node and its children
    report = push_to(source, spec)
    assert report.ok and report.snapshots_sent == 1 and report.objects_sent > 130 * 2
    assert push_to(source, spec).objects_sent == 0

    copy, pulled = clone(spec, tmp_path / "copy", passphrase=PASSPHRASE)
    with copy:
        assert pulled.ok and pulled.snapshots_received == 1
        assert copy.encrypted == (kind == "encrypted-vault")
        assert copy.head() == source.head() and state(copy) == state(source)

        add_jobs(source, 5, start=130)
        assert push_to(source, spec).snapshots_sent == 1
        origin = RemoteSpec(**{**spec.to_json(), "name": "origin"})  # type: ignore[arg-type]
        with connect(copy, origin, passphrase=PASSPHRASE) as link:
            moved = pull(copy, link)
        assert moved.head_moved and moved.snapshots_received == 1
        assert copy.head() == source.head() and state(copy) == state(source)
        assert len(copy.current_index().search(words=["fox"])) == 135

    with connect(source, spec, passphrase=PASSPHRASE) as link:
        assert verify_remote(link, read_data=True).ok
        image = next(source.entries()).images[0]
        assert image is not None
        if kind != "encrypting-remote":  # a sealed remote names objects by its own ids
            link.backend.delete(object_key(image))
            problems = verify_remote(link).problems
            assert [(p.kind, p.object_id) for p in problems] == [("missing", image)]
    if kind == "encrypting-remote":
        backend = open_backend(spec)
        names = {k.rpartition("/")[2] for k in backend.list("objects/")}
        assert names and not names & set(source.store.iter_ids())
    source.close()


def test_cli_add_push_verify_clone_pull_on_azurite(azurite: Azurite, tmp_path: Path) -> None:
    vault_dir = tmp_path / "vault"
    source = Vault.init(vault_dir)
    add_jobs(source, 12)
    source.close()
    container = azurite.spec().url.split("/")[2]
    v = ("--vault", str(vault_dir))
    where = ("--endpoint-url", azurite.endpoint)
    added = run_cli(*v, "remote", "add", "cloud", f"azure://{container}/mj", *where)
    assert added.returncode == 0, added.stderr
    stored = json.loads((vault_dir / "remotes" / "cloud.json").read_text())
    assert stored["url"] == f"az://{container}/mj" and stored["endpoint_url"] == azurite.endpoint
    assert ACCOUNT_KEY not in json.dumps(stored)
    pushed = run_cli(*v, "--json", "push", "cloud")
    assert pushed.returncode == 0, pushed.stderr
    assert json.loads(pushed.stdout)["snapshots_sent"] == 1
    checked = run_cli(*v, "verify", "--remote", "cloud", "--read-data")
    assert checked.returncode == 0 and b"no problems found" in checked.stdout, checked.stderr

    copy_dir = tmp_path / "copy"
    cloned = run_cli("clone", f"az://{container}/mj", str(copy_dir), *where)
    assert cloned.returncode == 0, cloned.stderr
    assert ACCOUNT_KEY.encode() not in cloned.stdout + cloned.stderr
    with Vault.open(vault_dir) as original, Vault.open(copy_dir) as copy:
        add_jobs(original, 3, start=12)
        head = original.head()
        assert copy.head() != head
    assert run_cli(*v, "push", "cloud").returncode == 0
    pulled = run_cli("--vault", str(copy_dir), "--json", "pull", "origin")
    assert pulled.returncode == 0, pulled.stderr
    with Vault.open(copy_dir) as copy:
        assert copy.head() == head
    assert run_cli("--vault", str(copy_dir), "verify", "--read-data").returncode == 0


def test_a_wrong_account_key_is_one_line(azurite: Azurite, tmp_path: Path) -> None:
    vault_dir = tmp_path / "vault"
    Vault.init(vault_dir).close()
    spec = azurite.spec()
    wrong = base64.b64encode(b"not the account key, 64 bytes long......................").decode()
    result = run_cli(
        "--vault", str(vault_dir), "remote", "add", "cloud", spec.url,
        "--endpoint-url", azurite.endpoint,
        env={"AZURE_STORAGE_ACCOUNT_NAME": ACCOUNT, "AZURE_STORAGE_ACCOUNT_KEY": wrong},
    )  # fmt: skip
    assert result.returncode == 1
    lines = result.stderr.decode().strip().splitlines()
    assert len(lines) == 1 and "refused the credentials" in lines[0], lines
    assert wrong not in lines[0] and "AZURE_STORAGE_ACCOUNT_KEY" in lines[0]
    assert not (vault_dir / "remotes" / "cloud.json").exists()


def test_a_stopped_azurite_is_one_line_in_seconds(azurite: Azurite, tmp_path: Path) -> None:
    with Azurite() as gone:  # a second one, stopped before use
        endpoint = gone.endpoint
        spec = gone.spec()
    vault_dir = tmp_path / "vault"
    Vault.init(vault_dir).close()
    result = run_cli(
        "--vault", str(vault_dir), "remote", "add", "cloud", spec.url, "--endpoint-url", endpoint,
        env={"AZURE_STORAGE_ACCOUNT_NAME": ACCOUNT, "AZURE_STORAGE_ACCOUNT_KEY": ACCOUNT_KEY,
             "MJVAULT_REMOTE_RETRY_SECONDS": "2"},
    )  # fmt: skip
    assert result.returncode == 1
    assert len(result.stderr.decode().strip().splitlines()) == 1, result.stderr
    assert b"Traceback" not in result.stderr


def test_503s_and_a_server_gone_mid_push_on_azurite(
    azurite: Azurite, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MJVAULT_REMOTE_RETRY_SECONDS", "1")
    with FaultProxy(azurite.port) as proxy:
        # The proxy forwards the path (account included); Shared Key does not sign the host.
        spec = azurite.spec(endpoint_url=f"{proxy.endpoint}/{ACCOUNT}")
        direct = open_backend(RemoteSpec(**{**spec.to_json(), "endpoint_url": azurite.endpoint}))  # type: ignore[arg-type]
        source = Vault.init(tmp_path / "src")
        add_jobs(source, 40)
        # The service answers 25 requests, then goes silent: the push dies part-way.
        proxy.dead_after = 25
        with pytest.raises(RemoteError):
            push_to(source, spec)
        arrived = sum(1 for _ in direct.list("objects/"))
        assert 5 <= arrived < 40 * 2 and not list(direct.list("snapshots/"))
        # Back, but failing every 4th request with a 503: retried, and nothing is sent twice.
        proxy.dead_after, proxy.requests, proxy.fail_every = None, 0, 4
        report = push_to(source, spec)
        assert report.ok and report.snapshots_sent == 1 and proxy.failures > 0
        assert report.objects_skipped >= arrived - 1 and report.objects_sent < 40 * 2
        with connect(source, spec) as link:
            checked = verify_remote(link, read_data=True)
            assert checked.ok, checked.problems
    source.close()


def test_a_missing_service_skips_or_under_require_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MJVAULT_REQUIRE_SERVICES", raising=False)
    with pytest.raises(pytest.skip.Exception, match="no such service"):
        service_missing("no such service")
    monkeypatch.setenv("MJVAULT_REQUIRE_SERVICES", "1")
    with pytest.raises(pytest.fail.Exception, match="no such service"):
        service_missing("no such service")
    monkeypatch.setenv("MJVAULT_AZURITE", "/nonexistent/azurite-blob")
    assert "not installed" in (azurite_service.missing() or "")


def test_an_azurite_that_cannot_start_says_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    broken = tmp_path / "azurite-blob"
    broken.write_text("#!/bin/sh\necho 'port already taken' >&2\nexit 3\n")
    broken.chmod(0o755)
    monkeypatch.setenv("MJVAULT_AZURITE", str(broken))
    if azurite_service.missing():
        pytest.skip("needs Node.js on PATH to get as far as starting")
    with pytest.raises(RuntimeError, match="Azurite exited at start: port already taken"):
        Azurite(timeout=10)
    silent = tmp_path / "silent"
    silent.write_text("#!/bin/sh\nexec sleep 30\n")
    silent.chmod(0o755)
    monkeypatch.setenv("MJVAULT_AZURITE", str(silent))
    with pytest.raises(RuntimeError, match="did not listen within 1 s"):
        Azurite(timeout=1)


# -- GCS ------------------------------------------------------------------------------------
def test_gcs_remotes_are_opened_with_their_options(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A service-account file as emulators take it: no OAuth, a base URL of its own.
    account = tmp_path / "sa.json"
    account.write_text(
        json.dumps(
            {"disable_oauth": True, "client_email": "", "private_key": "", "private_key_id": ""}
        )
    )
    monkeypatch.setenv("GOOGLE_SERVICE_ACCOUNT", str(account))
    backend = open_backend(RemoteSpec("g", "gs://bucket/mj", endpoint_url="http://127.0.0.1:1"))
    assert backend.describe() == "gs://bucket/mj"
    monkeypatch.setenv("MJVAULT_REMOTE_RETRY_SECONDS", "1")
    backend = open_backend(RemoteSpec("g", "gs://bucket/mj", endpoint_url="http://127.0.0.1:1"))
    with pytest.raises(RemoteError) as caught:
        backend.get("config")
    assert not isinstance(caught.value, RemoteAuthError)
    assert caught.value.message.startswith("cannot read gs://bucket/mj/config: ")
    assert "\n" not in caught.value.message
    account.write_text("{not json")
    with pytest.raises(ConfigError) as bad:
        open_backend(RemoteSpec("g", "gs://bucket/mj"))
    assert "GOOGLE_APPLICATION_CREDENTIALS" in (bad.value.hint or "")


GCS_URL = os.environ.get("MJVAULT_TEST_GCS_URL")


@pytest.mark.skipif(
    not GCS_URL,
    reason="no GCS emulator speaks obstore's XML API (gcp-storage-emulator answers 501, "
    "fake-gcs-server 400 to its PUT): set MJVAULT_TEST_GCS_URL=gs://bucket/prefix and "
    "GOOGLE_APPLICATION_CREDENTIALS to run against a real bucket",
)
def test_push_and_clone_on_a_real_gcs_bucket(tmp_path: Path) -> None:
    import uuid

    spec = RemoteSpec("gcs", f"{GCS_URL}/{uuid.uuid4().hex[:12]}")
    source = Vault.init(tmp_path / "src")
    add_jobs(source, 20)
    assert push_to(source, spec).snapshots_sent == 1
    backend = open_backend(spec)
    assert not backend.put("config", b"x", create_only=True)
    copy, _ = clone(spec, tmp_path / "copy")
    with copy:
        assert copy.head() == source.head() and state(copy) == state(source)
    source.close()
