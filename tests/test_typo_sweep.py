"""A sweep of bad command lines: each is one line, a non-zero exit, and an untouched vault.

Each case runs the real entry point in-process on a fresh copy of a small plain vault (``v``)
and an encrypted one (``e``), beside a file (``afile``), a directory (``adir``), a binary file
(``binary``) and a wrong passphrase (``wrongpass``). ``says`` is a fragment the one error line
must hold: the thing that is wrong, named.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import threading
from pathlib import Path

import pytest
from config_helpers import Result, isolate, run_cli

from mjvault import Vault
from tests.conftest import CHEAP_KDF, PASSPHRASE, png_bytes, record_json

V = ("--vault", "v")
E = ("--vault", "e", "--passphrase-file", "wrongpass")

CASES: list[tuple[tuple[str, ...], str]] = [
    # remotes
    ((*V, "remote", "add", "bad name", "/tmp/x"), "bad remote name"),
    ((*V, "remote", "add", "x", "afile"), "absolute path"),
    ((*V, "remote", "add", "x", "s3://"), "needs a bucket"),
    ((*V, "remote", "add", "x", "/dev/null"), "/dev/null"),
    ((*V, "remote", "remove", "../etc"), "bad remote name"),
    ((*V, "remote", "remove", "nope"), "no remote named nope"),
    ((*V, "push", ""), "bad remote name"),
    ((*V, "push", "../x"), "bad remote name"),
    ((*V, "pull", "nope"), "no remote named nope"),
    ((*V, "push", "--threads", "0", "x"), "--threads"),
    ((*V, "verify", "--remote", ""), "bad remote name ''"),
    (("clone", "s3://", "copy"), "needs a bucket"),
    (("clone", "relative", "copy"), "absolute path"),
    (("clone", "/nonexistent/remote", "copy"), "holds no mjvault remote"),
    (("clone", "/dev/null", "copy"), "/dev/null"),
    (("clone", "/nonexistent/remote", ""), "the path is empty"),
    # config
    ((*V, "config", "set", "nonsense", "1"), "unknown setting nonsense"),
    ((*V, "config", "set", "sync.jobs", "lots"), "sync.jobs"),
    ((*V, "config", "get", "sync"), "unknown setting sync"),
    (("--vault", "afile", "config", "set", "--vault", "sync.jobs", "3"), "is not a vault"),
    (("--profile", "../x", "config", "show"), "no profile named"),
    # global options
    (("--log-file", "adir", "config", "path"), "adir"),
    (("--log-file", "", "config", "path"), "--log-file"),
    (("--log-file", "nodir/x.log", "config", "path"), "nodir"),
    (("--log-file", "v/config", "config", "path"), "inside the vault"),
    (("--log-file", "v/new.log", "config", "path"), "inside the vault"),
    (("--vault", "/nonexistent", "search", "fox"), "/nonexistent"),
    (("--vault", "afile", "search", "fox"), "afile"),
    # checkout
    ((*V, "checkout", "--template", "{date:%Q%}/{job_id}", "out"), "%Q"),
    ((*V, "checkout", "--template", "", "out"), "template"),
    ((*V, "checkout", "--template", "{job_id:99999999999999999999}", "out"), "length"),
    ((*V, "checkout", "afile"), "afile"),
    ((*V, "checkout", ""), "the path is empty"),
    ((*V, "checkout", "v"), "inside the vault"),
    ((*V, "checkout", "v/objects"), "inside the vault"),
    ((*V, "checkout", "/dev/null"), "not a directory"),
    ((*V, "checkout", "--remove", "nope"), "no view named"),
    ((*V, "checkout", "--remove", ""), "--remove"),
    ((*V, "checkout", "--since", "yesterday", "out"), "--since"),
    ((*V, "checkout", "--since", "2024-13-45", "out"), "--since"),
    ((*V, "checkout", "--param", "noequals", "out"), "--param"),
    ((*V, "checkout", "--ar", "x:y", "out"), "--ar"),
    ((*V, "checkout", "--ar", "0:0", "out"), "--ar"),
    ((*V, "checkout", "--snapshot", "deadbeef", "out"), "deadbeef"),
    ((*V, "checkout", "--snapshot", "", "out"), "--snapshot"),
    ((*V, "checkout", "--name", "", "out"), "name"),
    ((*V, "checkout", "--name", "../x", "out"), "name"),
    ((*V, "checkout", "--link", "wormhole", "out"), "--link"),
    ((*V, "checkout", "--list", "out"), "--list"),
    # search
    ((*V, "search", "type:"), "type:"),
    ((*V, "search", "date:2024-99"), "2024-99"),
    ((*V, "search", "since:garbage"), "garbage"),
    ((*V, "search", "--paths", "noview", "fox"), "noview"),
    ((*V, "search", "-n", "0", "fox"), "--limit"),
    # export
    ((*V, "export", "-o", "adir"), "adir"),
    ((*V, "export", "-o", ""), "the path is empty"),
    ((*V, "export", "-o", "tovault"), "inside the vault"),
    ((*V, "export", "-o", "nodir/out.csv"), "nodir"),
    ((*V, "export", "-o", "afile/out.csv"), "afile"),
    ((*V, "export", "-o", "v/config"), "inside the vault"),
    ((*V, "export", "-o", "v/objects/out.csv"), "inside the vault"),
    ((*V, "export", "-f", "parquet"), "-o FILE"),
    ((*V, "export", "-f", "xml"), "xml"),
    # gallery
    ((*V, "gallery", "afile"), "afile"),
    ((*V, "gallery", ""), "the path is empty"),
    ((*V, "gallery", "v"), "outside the vault"),
    ((*V, "gallery", "/dev/null"), "/dev/null"),
    ((*V, "gallery", "--thumb-size", "0", "g"), "--thumb-size"),
    # stats
    ((*V, "stats", "--chart", "adir"), "adir"),
    ((*V, "stats", "--chart", ""), "the path is empty"),
    ((*V, "stats", "--chart", "nodir/c.html"), "nodir"),
    ((*V, "stats", "--chart", "v/config"), "inside the vault"),
    ((*V, "stats", "--top", "0"), "--top"),
    # keys and passphrases
    ((*V, "key", "list"), "not encrypted"),
    (("--vault", "e", "key", "list"), "no passphrase"),
    ((*E, "key", "list"), "wrong passphrase"),
    (("--vault", "e", "--passphrase-file", "binary", "key", "list"), "binary"),
    (("--vault", "e", "--passphrase-file", "/nonexistent", "key", "list"), "/nonexistent"),
    (("--vault", "e", "--passphrase-file", "adir", "key", "list"), "adir"),
    (("--vault", "e", "--passphrase-file", "big", "key", "list"), "big"),
    ((*E, "key", "remove", "nope"), "wrong passphrase"),
    # inspection
    ((*V, "show", "nope"), "nope"),
    ((*V, "cat", "../../etc/passwd"), "OBJECT_ID"),
    ((*V, "import", "/nonexistent"), "/nonexistent"),
    ((*V, "import", "afile"), "afile"),
]


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("sweep")
    with Vault.init(root / "v") as vault, vault.writer("test") as writer:
        for n in range(3):
            image = writer.put_media(png_bytes(n))
            writer.add_job(record_json(f"job-{n}", f"fox {n}"), [image])
    Vault.init(root / "e", encrypt=True, passphrase=PASSPHRASE, kdf=CHEAP_KDF).close()
    (root / "afile").write_text("x")
    (root / "adir").mkdir()
    (root / "binary").write_bytes(b"\xff\xfe\x00\x81 not text")
    (root / "wrongpass").write_text("wrong\n")
    (root / "big").write_bytes(b"a" * (2 << 20))
    (root / "tovault").symlink_to("v/config")
    return root


def fingerprint(vault: Path) -> dict[str, str]:
    """What a failed command must leave as it was: every file but the index, tmp/ and locks."""
    return {
        str(p.relative_to(vault)): hashlib.blake2b(p.read_bytes()).hexdigest()
        for p in sorted(vault.rglob("*"))
        if p.is_file()
        and p.name != "lock"
        and p.relative_to(vault).parts[0] not in ("index", "tmp")
    }


@pytest.mark.parametrize(
    ("args", "says"), CASES, ids=[" ".join(a).replace("/", "|") or "-" for a, _ in CASES]
)
def test_a_bad_command_line_is_one_line_and_harmless(
    pristine: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    args: tuple[str, ...],
    says: str,
) -> None:
    world = tmp_path / "w"
    shutil.copytree(pristine, world, symlinks=True)
    isolate(monkeypatch, world)
    before = {name: fingerprint(world / name) for name in ("v", "e")}

    result: Result = run_cli(capsys, *args)

    assert result.code not in (0, -1), result
    assert "Traceback" not in result.err
    # Ours are one line; click's usage errors add a usage line and a hint around their one line.
    errors = [line for line in result.err.splitlines() if "rror:" in line]
    assert len(errors) == 1, result.err
    assert says in errors[0], errors[0]
    assert {name: fingerprint(world / name) for name in ("v", "e")} == before
    assert not (world / "copy").exists() and not (world / "g").exists()
    assert not (world / "index.html").exists()  # an empty DIR is not the current directory


def test_export_writes_through_a_link_and_into_a_pipe(
    pristine: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    world = tmp_path / "w"
    shutil.copytree(pristine, world, symlinks=True)
    isolate(monkeypatch, world)
    (world / "real.jsonl").write_text("")
    (world / "link.jsonl").symlink_to("real.jsonl")
    assert run_cli(capsys, *V, "export", "-o", "link.jsonl").code == 0
    assert (world / "link.jsonl").is_symlink()
    assert len((world / "real.jsonl").read_text().splitlines()) == 3

    # A pipe stands in for /dev/stdout: renaming a file over it would replace the device.
    os.mkfifo(world / "pipe")
    received: list[bytes] = []
    reader = threading.Thread(target=lambda: received.append((world / "pipe").read_bytes()))
    reader.start()
    result = run_cli(capsys, *V, "export", "-o", "pipe")
    reader.join(timeout=30)
    assert result.code == 0, result
    assert stat.S_ISFIFO((world / "pipe").lstat().st_mode)
    assert len(received[0].splitlines()) == 3
