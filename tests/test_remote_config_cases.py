"""The cases of a remote's URL and stored spec (mjvault/remotes/config.py) one by one: each
provider's naming rules, the options each kind of remote takes, the endpoint's checks, the
stored files read back (and broken by hand), and the backend each URL opens. Real files in a
real vault folder; no object store is contacted (a backend connects on its first request)."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import pytest

from mjvault.errors import ConfigError
from mjvault.remotes.config import (
    RemoteSpec,
    RemoteURL,
    auto_push_names,
    check_name,
    check_spec,
    delete_spec,
    list_specs,
    load_spec,
    normalise_url,
    open_backend,
    parse_remote_url,
    remote_names,
    save_spec,
    spec_path,
    state_dir,
)


# -- URLs ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "stored"),
    [
        ("s3://bucket", "s3://bucket"),
        ("s3://bucket/", "s3://bucket"),
        ("S3://my.bucket-1/a/b/", "s3://my.bucket-1/a/b"),
        ("az://container/p", "az://container/p"),
        ("azure://container/p", "az://container/p"),
        ("gs://bucket_1/p", "gs://bucket_1/p"),
        ("gs://a.b-c_d.e", "gs://a.b-c_d.e"),
        ("file:///mnt/nas/", "file:///mnt/nas"),
        ("file://localhost/mnt/nas", "file:///mnt/nas"),
        ("/mnt//nas/./vault/", "file:///mnt/nas/vault"),
        ("/", "file:///"),
    ],
)
def test_urls_in_their_stored_form(text: str, stored: str) -> None:
    assert normalise_url(text) == stored


def test_a_home_path_expands() -> None:
    url = parse_remote_url("~/backups")
    assert url == RemoteURL("file", "", os.path.expanduser("~/backups"))
    assert str(url) == "file://" + os.path.expanduser("~/backups")


def test_an_unknown_user_home_is_a_relative_path() -> None:
    with pytest.raises(ConfigError, match="absolute path"):
        parse_remote_url("~no-such-user-here-at-all/backups")


def test_a_url_that_is_not_text() -> None:
    with pytest.raises(ConfigError, match="expected text"):
        parse_remote_url(42)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "why"),
    [
        # Azure containers: no '.', no '_', no '--'
        ("az://my.container/p", "not a container name"),
        ("az://my--container/p", "no '--'"),
        ("az://ab", "not a container name"),
        ("azure://UPPER/p", "not a container name"),
        # Google buckets
        ("gs://googbucket/p", "reserves"),
        ("gs://my-google-bucket/p", "reserves"),
        ("gs://192.168.1.10/p", "IP address"),
        ("gs://" + "a" * 64, "222 when dotted"),
        ("gs://" + "a" * 64 + ".b", "222 when dotted"),
        ("gs://a..b", "222 when dotted"),
        ("gs://-bucket", "222 when dotted"),
        # prefixes
        ("gs://bucket/a/ b", "space"),
        ("az://container/a/./b", "'.' is not allowed in a az:// prefix"),
        ("gs://bucket/a//b", "gs:// prefix has no empty parts"),
        ("az://container/p?sv=2024", "--endpoint-url, --allow-http"),
        ("az:container", "az://container/prefix"),
        ("azure:/container", "azure://container/prefix"),
        ("gs:bucket", "gs://bucket/prefix"),
        ("file:/mnt/nas", "file:///path"),
        ("/mnt/ nas", "space"),
    ],
)
def test_each_providers_rules(text: str, why: str) -> None:
    with pytest.raises(ConfigError, match="bad remote URL") as caught:
        parse_remote_url(text)
    assert why in caught.value.message


def test_a_dotted_google_bucket_may_be_long() -> None:
    name = ".".join(["a" * 63] * 3)
    assert parse_remote_url(f"gs://{name}/p").bucket == name


@pytest.mark.parametrize("scheme", ["az", "gs", "s3"])
def test_credentials_in_a_url_are_never_echoed(scheme: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_remote_url(f"{scheme}://KEYID:s3cr3t@bucket/p")
    assert "s3cr3t" not in caught.value.message
    assert "KEYID" not in caught.value.message
    assert "carry no credentials" in caught.value.message


def test_a_host_in_place_of_a_bucket_points_at_the_endpoint_option() -> None:
    with pytest.raises(ConfigError, match="the server goes in --endpoint-url"):
        parse_remote_url("gs://storage.example:443/bucket")


# -- names and specs ----------------------------------------------------------------------
@pytest.mark.parametrize("name", ["", ".hidden", "a/b", "a b", "x" * 65, "ünï"])
def test_bad_remote_names(name: str) -> None:
    with pytest.raises(ConfigError, match="bad remote name"):
        check_name(name)


def test_a_good_remote_name_is_returned() -> None:
    assert check_name("nas-2.backup_1") == "nas-2.backup_1"
    assert check_name("x" * 64) == "x" * 64


def test_a_spec_is_stored_in_canonical_form_and_knows_its_kind() -> None:
    spec = check_spec(RemoteSpec("b", "S3://bucket/mj/", region="eu-west-1"))
    assert spec.url == "s3://bucket/mj" and spec.is_s3
    assert not check_spec(RemoteSpec("n", "/mnt/nas")).is_s3
    assert spec.to_json()["region"] == "eu-west-1"


@pytest.mark.parametrize("flag", ["encrypt", "allow_http", "virtual_hosted", "auto_push"])
def test_a_flag_that_is_not_a_boolean(flag: str) -> None:
    spec = RemoteSpec("r", "s3://bucket", **{flag: "yes"})  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=f"{flag} must be true or false"):
        check_spec(spec)


def test_options_that_do_not_go_with_the_kind_of_remote() -> None:
    with pytest.raises(ConfigError, match=r"--region go with s3:// remotes, not az:// remotes"):
        check_spec(RemoteSpec("r", "az://container", region="eu-west-1"))
    with pytest.raises(ConfigError, match=r"--virtual-hosted go with s3:// remotes, not gs://"):
        check_spec(RemoteSpec("r", "gs://bucket", virtual_hosted=True))
    with pytest.raises(
        ConfigError, match=r"--endpoint-url go with s3://, az://, gs:// remotes, not folders"
    ):
        check_spec(RemoteSpec("r", "/mnt/nas", endpoint_url="http://127.0.0.1:9000"))
    # what does go with them is kept
    spec = check_spec(
        RemoteSpec("r", "gs://bucket", endpoint_url="http://127.0.0.1:4443", allow_http=True)
    )
    assert spec.allow_http


@pytest.mark.parametrize("region", ["eu west", "", "x" * 65, "eu_west_1"])
def test_bad_regions(region: str) -> None:
    with pytest.raises(ConfigError, match="bad region"):
        check_spec(RemoteSpec("r", "s3://bucket", region=region))


def test_a_region_that_is_not_text() -> None:
    with pytest.raises(ConfigError, match="bad region"):
        check_spec(RemoteSpec("r", "s3://bucket", region=5))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "endpoint",
    [
        "127.0.0.1:9000",  # no scheme
        "ftp://127.0.0.1",
        "http://",
        "http://127.0.0.1:notaport",
        "http://127.0.0.1:99999",
        "http://[::1",
    ],
)
def test_bad_endpoints(endpoint: str) -> None:
    with pytest.raises(ConfigError, match="bad endpoint URL .*give http"):
        check_spec(RemoteSpec("r", "s3://bucket", endpoint_url=endpoint))


def test_an_endpoint_that_is_not_text() -> None:
    with pytest.raises(ConfigError, match="bad endpoint URL 9000"):
        check_spec(RemoteSpec("r", "s3://bucket", endpoint_url=9000))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("url", "endpoint", "named"),
    [
        ("s3://bucket", "http://KEY:hunter2@127.0.0.1:9000", "AWS_ACCESS_KEY_ID"),
        ("az://container", "https://acct.blob.example/?sig=hunter2", "AZURE_STORAGE_ACCOUNT_KEY"),
        ("gs://bucket", "https://user:hunter2@gcs.example", "GOOGLE_APPLICATION_CREDENTIALS"),
    ],
)
def test_an_endpoint_carrying_credentials_is_refused_without_echoing_them(
    url: str, endpoint: str, named: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        check_spec(RemoteSpec("r", url, endpoint_url=endpoint))
    assert "hunter2" not in caught.value.message
    assert named in caught.value.message


# -- stored specs -------------------------------------------------------------------------
def test_save_load_list_and_delete(tmp_path: Path) -> None:
    save_spec(tmp_path, RemoteSpec("nas", "/mnt/nas/", auto_push=True))
    save_spec(tmp_path, RemoteSpec("cloud", "s3://bucket/mj", region="eu-west-1"))
    folder = tmp_path / "remotes"
    assert oct(folder.stat().st_mode & 0o777) == "0o700"
    assert oct(spec_path(tmp_path, "nas").stat().st_mode & 0o777) == "0o600"
    assert remote_names(tmp_path) == ["cloud", "nas"]
    assert [s.url for s in list_specs(tmp_path)] == ["s3://bucket/mj", "file:///mnt/nas"]
    assert load_spec(tmp_path, "nas") == RemoteSpec("nas", "file:///mnt/nas", auto_push=True)
    assert auto_push_names(tmp_path) == ["nas"]

    # an encrypting remote's own state goes with it
    state = state_dir(tmp_path, "cloud")
    state.mkdir()
    (state / "ids").write_bytes(b"map")
    delete_spec(tmp_path, "cloud")
    assert not state.exists()
    delete_spec(tmp_path, "nas")  # no state folder: nothing else to remove
    assert remote_names(tmp_path) == []
    assert list(folder.iterdir()) == []


def test_a_vault_without_remotes(tmp_path: Path) -> None:
    assert remote_names(tmp_path) == []
    assert list_specs(tmp_path) == []
    assert auto_push_names(tmp_path) == []
    with pytest.raises(ConfigError, match="no remote named nas") as caught:
        load_spec(tmp_path, "nas")
    assert "remote add" in (caught.value.hint or "")
    with pytest.raises(ConfigError, match="no remote named nas"):
        delete_spec(tmp_path, "nas")


def write_raw(vault: Path, name: str, text: str | bytes) -> Path:
    path = vault / "remotes" / f"{name}.json"
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    return path


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ("{not json", "is unreadable"),
        (b"\xff\xfe", "is unreadable"),
        ("[1, 2]", "holds no remote"),
        ('{"name": "other", "url": "/mnt/nas"}', "names another remote ('other')"),
        ('{"name": "nas"}', "is malformed"),
        ('{"name": "nas", "url": "/mnt/nas", "colour": "red"}', "is malformed"),
        ('{"name": "nas", "url": "relative"}', "absolute path"),
        ('{"name": "nas", "url": "/mnt/nas", "auto_push": "yes"}', "auto_push must be"),
    ],
)
def test_a_stored_spec_broken_by_hand_is_one_clear_error(
    tmp_path: Path, text: str, said: str
) -> None:
    write_raw(tmp_path, "nas", text)
    with pytest.raises(ConfigError) as caught:
        load_spec(tmp_path, "nas")
    message = caught.value.message
    assert message.startswith("remote nas: ") and said in message
    assert "\n" not in message


def test_a_broken_spec_stays_removable(tmp_path: Path) -> None:
    write_raw(tmp_path, "nas", "{not json")
    delete_spec(tmp_path, "nas")
    assert remote_names(tmp_path) == []


def test_auto_push_skips_a_broken_remote_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    save_spec(tmp_path, RemoteSpec("good", "/mnt/good", auto_push=True))
    save_spec(tmp_path, RemoteSpec("quiet", "/mnt/quiet"))
    write_raw(tmp_path, "broken", '{"name": "broken", "url": "s3:", "auto_push": true}')
    with caplog.at_level(logging.WARNING, logger="mjvault.remotes.config"):
        assert auto_push_names(tmp_path) == ["good"]
    assert "remote broken skipped for auto-push" in caplog.text
    with pytest.raises(ConfigError):
        list_specs(tmp_path)  # a listing that must show every remote fails on it instead


def test_a_bad_name_never_reaches_the_file_system(tmp_path: Path) -> None:
    for call in (load_spec, delete_spec, state_dir, spec_path):
        with pytest.raises(ConfigError, match="bad remote name"):
            call(tmp_path, "../escape")
    assert not (tmp_path / "remotes").exists()


# -- the backend each URL opens -----------------------------------------------------------
def test_a_folder_url_opens_a_folder_backend(tmp_path: Path) -> None:
    from mjvault.remotes.folder import FolderBackend

    backend = open_backend(RemoteSpec("n", str(tmp_path / "remote")))
    try:
        assert isinstance(backend, FolderBackend)
    finally:
        backend.close()


@pytest.mark.parametrize(
    ("spec", "kind", "described"),
    [
        (
            RemoteSpec(
                "r",
                "s3://bucket/mj",
                endpoint_url="http://127.0.0.1:9",
                region="eu-west-1",
                virtual_hosted=True,
            ),
            "S3Backend",
            "s3://bucket/mj",
        ),
        (
            RemoteSpec("r", "azure://container/mj", endpoint_url="http://127.0.0.1:9/acct"),
            "AzureBackend",
            "az://container/mj",
        ),
        (
            RemoteSpec("r", "gs://bucket", endpoint_url="http://127.0.0.1:9", allow_http=True),
            "GCSBackend",
            "gs://bucket",
        ),
    ],
)
def test_an_object_store_url_opens_its_providers_backend(
    monkeypatch: pytest.MonkeyPatch, spec: RemoteSpec, kind: str, described: str
) -> None:
    # Credentials as the providers' own tools take them (never stored in the spec); nothing
    # is sent before the first request, so no server is needed to open one.
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    monkeypatch.setenv("AZURE_STORAGE_ACCOUNT_NAME", "devstoreaccount1")
    monkeypatch.setenv("AZURE_STORAGE_ACCOUNT_KEY", "dGVzdA==")
    monkeypatch.setenv("GOOGLE_SERVICE_ACCOUNT_KEY", json.dumps({"type": "authorized_user"}))
    try:
        backend = open_backend(spec)
    except ConfigError as exc:
        # GCS wants a service account before its first request on some obstore versions:
        # then the failure is one line naming where credentials come from.
        assert kind == "GCSBackend" and "GCS client" in exc.message
        return
    try:
        assert type(backend).__name__ == kind
        assert backend.describe() == described
    finally:
        backend.close()
