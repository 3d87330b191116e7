"""Remote URLs are parsed strictly: when added, when loaded from the vault, and before use.

A typo such as ``s3://`` once became the folder remote ``s3:``, that is the current directory,
and ``push`` wrote a whole vault copy there. Every malformed URL is now one line and exit 2,
both when typed and when found in ``remotes/NAME.json``.
"""

from __future__ import annotations

import json
import os
import posixpath
from pathlib import Path

import pytest
from config_helpers import Result, isolate, run_cli
from hypothesis import given, settings
from hypothesis import strategies as st

from mjvault import Vault
from mjvault.errors import ConfigError
from mjvault.remotes import config as remote_config
from mjvault.remotes.config import RemoteSpec, open_backend, save_spec

BAD_URLS = [
    ("s3://", "bucket"),
    ("s3:///mj", "bucket"),
    ("s3://b", "bucket"),
    ("s3://Bad_Bucket/mj", "bucket"),
    ("s3://bucket-/mj", "bucket"),
    ("s3://my..bucket/mj", "bucket"),
    ("s3://localhost:9000/bucket", "bucket"),
    ("s3://bucket/../x", "'..'"),
    ("s3://bucket/mj/..", "'..'"),
    ("s3://bucket/a/./b", "'.'"),
    ("s3://bucket//mj", "empty"),
    ("s3://bucket/mj?region=eu", "'?'"),
    ("s3://bucket/mj#x", "'#'"),
    ("s3://bucket/m\\j", "backslash"),
    ("s3://bucket/m\nj", "control"),
    ("s3:bucket/mj", "s3://bucket"),
    ("S3:/bucket", "s3://bucket"),
    ("ftp://bucket/mj", "unsupported"),
    ("https://example.com/mj", "unsupported"),
    ("file://", "absolute"),
    ("file://relative/dir", "absolute"),
    ("file://host/dir", "absolute"),
    ("file:///mnt/../etc", "'..'"),
    ("relative/dir", "absolute"),
    (".", "absolute"),
    ("", "empty"),
    ("   ", "empty"),
    (" /mnt/nas", "spaces"),
    ("/mnt/nas\x00x", "control"),
    ("~\x00", "control"),
    ("/mnt/../etc", "'..'"),
]


@pytest.fixture
def world(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    isolate(monkeypatch, tmp_path)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    Vault.init(tmp_path / "vault").close()
    return tmp_path


def cli(capsys: pytest.CaptureFixture[str], root: Path, *args: str) -> Result:
    return run_cli(capsys, "--vault", str(root / "vault"), *args)


def assert_one_line(result: Result, code: int = 2) -> str:
    assert result.code == code, result
    assert "Traceback" not in result.err
    lines = result.err.splitlines()
    assert len(lines) == 1, result.err
    return lines[0]


@pytest.mark.parametrize(("url", "why"), BAD_URLS)
def test_remote_add_refuses_a_malformed_url(
    world: Path, capsys: pytest.CaptureFixture[str], url: str, why: str
) -> None:
    line = assert_one_line(cli(capsys, world, "remote", "add", "x", url))
    assert why in line
    assert not (world / "vault" / "remotes" / "x.json").exists()
    assert list((world / "work").iterdir()) == []


def test_credentials_in_an_s3_url_are_refused_without_echoing_them(
    world: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    line = assert_one_line(cli(capsys, world, "remote", "add", "x", "s3://AKIA:hunter2@bucket/mj"))
    assert "AWS_ACCESS_KEY_ID" in line and "hunter2" not in line
    line = assert_one_line(cli(capsys, world, "remote", "add", "x", "s3://A:hunter2@b\n/mj"))
    assert "hunter2" not in line


def test_s3_options_on_a_folder_remote_and_bad_endpoints_are_refused(
    world: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = str(world / "drive")
    line = assert_one_line(
        cli(capsys, world, "remote", "add", "x", folder, "--endpoint-url", "http://h:9000")
    )
    assert "--endpoint-url" in line
    for endpoint in ("localhost:9000", "ftp://h", "http://", "http://u:p@h"):
        line = assert_one_line(
            cli(capsys, world, "remote", "add", "x", "s3://bucket/mj", "--endpoint-url", endpoint)
        )
        assert "endpoint" in line and "u:p" not in line
    line = assert_one_line(
        cli(capsys, world, "remote", "add", "x", "s3://bucket/mj", "--region", "eu west")
    )
    assert "region" in line
    assert not (world / "drive").exists()


def test_a_folder_remote_inside_the_vault_is_refused(
    world: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for target in (world / "vault", world / "vault" / "objects" / "x"):
        line = assert_one_line(cli(capsys, world, "remote", "add", "x", str(target)))
        assert "inside the vault" in line
    assert not (world / "vault" / "objects" / "x").exists()


def test_good_urls_are_stored_in_canonical_form(
    world: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    drive = world / "drive"
    added = cli(capsys, world, "remote", "add", "nas", f"{drive}//sub/./")
    assert added.code == 0, added
    stored = json.loads((world / "vault" / "remotes" / "nas.json").read_text())
    assert stored["url"] == f"file://{drive}/sub"
    assert (drive / "sub" / "config").exists()
    assert list((world / "work").iterdir()) == []


@pytest.mark.parametrize(
    "stored",
    ["s3:", "s3://", "s3://bucket/../x", "relative", "file://rel", "ftp://h/x", 5, None],
)
def test_commands_refuse_an_invalid_stored_remote(
    world: Path, capsys: pytest.CaptureFixture[str], stored: object
) -> None:
    remotes = world / "vault" / "remotes"
    remotes.mkdir(mode=0o700)
    (remotes / "bad.json").write_text(json.dumps({"name": "bad", "url": stored}))
    for command in (
        ["push", "bad"],
        ["pull", "bad"],
        ["pull", "--repair", "bad"],
        ["verify", "--remote", "bad"],
        ["verify", "--repair", "--from-remote", "bad"],
    ):
        line = assert_one_line(cli(capsys, world, *command))
        assert "remote bad" in line, (command, line)
    assert list((world / "work").iterdir()) == []
    # Still listed (marked) and removable, so the user can mend it.
    listed = cli(capsys, world, "remote", "list")
    assert listed.code == 0 and "bad" in listed.out and "invalid" in listed.out
    assert cli(capsys, world, "remote", "remove", "bad").code == 0
    assert not (remotes / "bad.json").exists()


@pytest.mark.parametrize("doc", ["[1, 2]", '{"name": "bad"}', '{"name": "other", "url": "/x"}'])
def test_a_stored_remote_of_the_wrong_shape_is_one_line(
    world: Path, capsys: pytest.CaptureFixture[str], doc: str
) -> None:
    remotes = world / "vault" / "remotes"
    remotes.mkdir(mode=0o700)
    (remotes / "bad.json").write_text(doc)
    line = assert_one_line(cli(capsys, world, "push", "bad"))
    assert "remote bad" in line


@pytest.mark.parametrize("url", ["s3://", "relative/dir", "gs://b/x"])
def test_clone_refuses_a_malformed_url(
    world: Path, capsys: pytest.CaptureFixture[str], url: str
) -> None:
    assert_one_line(run_cli(capsys, "clone", url, str(world / "copy")))
    assert not (world / "copy").exists()
    assert list((world / "work").iterdir()) == []


def test_open_backend_checks_a_spec_made_in_code(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        open_backend(RemoteSpec("x", "s3:"))
    with pytest.raises(ConfigError):
        save_spec(tmp_path, RemoteSpec("x", "relative"))


# -- properties of the parser ---------------------------------------------------------------
_BUCKET = st.from_regex(r"[a-z0-9][a-z0-9-]{1,20}(\.[a-z0-9-]{1,20})?[a-z0-9]", fullmatch=True)
_SEGMENT = st.text(
    st.characters(codec="utf-8", exclude_characters="/\\?#"), min_size=1, max_size=12
).filter(lambda s: s not in (".", "..") and s.strip() == s and s.isprintable())
_PATH = st.lists(_SEGMENT, min_size=0, max_size=5)


@given(_BUCKET, _PATH)
def test_valid_s3_urls_round_trip(bucket: str, segments: list[str]) -> None:
    url = "s3://" + "/".join([bucket, *segments])
    parsed = remote_config.parse_remote_url(url)
    assert (parsed.scheme, parsed.bucket, parsed.path) == ("s3", bucket, "/".join(segments))
    assert str(parsed) == url
    assert remote_config.parse_remote_url(str(parsed)) == parsed
    assert remote_config.parse_remote_url(url + "/") == parsed


@given(_PATH.filter(bool))
def test_valid_folder_paths_round_trip(segments: list[str]) -> None:
    path = "/" + "/".join(segments)
    parsed = remote_config.parse_remote_url(path)
    assert parsed.scheme == "file" and parsed.path == path
    assert str(parsed) == "file://" + path
    assert remote_config.parse_remote_url(str(parsed)) == parsed
    assert remote_config.parse_remote_url("file://" + path + "/") == parsed


_ANY = st.one_of(
    st.text(max_size=40),
    st.builds(
        lambda head, body: head + body,
        st.sampled_from(["s3://", "file://", "/", "S3://", "s3:", "file:", "~/", ""]),
        st.text(st.sampled_from("ab./-_:@?#%\\ \x00\n~"), max_size=30),
    ),
)


@settings(max_examples=400)
@given(_ANY)
def test_nothing_that_parses_escapes(text: str) -> None:
    try:
        parsed = remote_config.parse_remote_url(text)
    except ConfigError as exc:
        assert "\n" not in str(exc)
        return
    canonical = str(parsed)
    assert remote_config.parse_remote_url(canonical) == parsed
    segments = parsed.path.split("/")
    assert ".." not in segments and "." not in segments
    assert not any(c in canonical for c in "\x00\n\r\\")
    if parsed.scheme == "s3":
        assert parsed.bucket and canonical == f"s3://{parsed.bucket}" + (
            f"/{parsed.path}" if parsed.path else ""
        )
        assert "" not in segments or parsed.path == ""
    else:
        assert parsed.scheme == "file" and os.path.isabs(parsed.path)
        assert posixpath.normpath(parsed.path) == parsed.path
        assert not parsed.path.startswith("//")
