"""The behaviours that kept four hand-written parts over a library (docs/design.md,
"Libraries adopted and declined"): each test holds a case where the library would differ, so
a later swap cannot change them unnoticed."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from mjvault import Vault
from mjvault.cli.root import run
from mjvault.errors import MjvaultError, SourceError, SourceUnavailable, VaultLocked
from mjvault.lock import WriteLock, break_lock, read_holder
from mjvault.sources.midjourney.auth import parse_cookies_txt
from mjvault.sources.midjourney.settings import ClientSettings
from mjvault.sources.midjourney.transport import Retryable, Transport
from mjvault.views.paths import safe_component, safe_relpath

# -- cookies.txt: http.cookiejar.MozillaCookieJar refuses the whole file or drops these -----
HEADER = "# Netscape HTTP Cookie File\n"
LINE = ".midjourney.com\tTRUE\t/\tTRUE\t1999999999\tname\tvalue\n"


@pytest.mark.parametrize(
    ("text", "value", "expires"),
    [
        pytest.param(LINE, "value", 1999999999, id="no-header-line"),
        pytest.param(HEADER + LINE.replace("1999999999", "0"), "value", 0, id="expiry-0"),
        pytest.param(HEADER + LINE.replace("\tvalue", ""), "", 1999999999, id="dropped-tab"),
        pytest.param(HEADER + LINE.replace("value", "va\tlue"), "va\tlue", 1999999999, id="tab"),
        pytest.param(HEADER + "not a cookie\n" + LINE, "value", 1999999999, id="bad-line"),
        pytest.param(HEADER + LINE.replace("TRUE", "true"), "value", 1999999999, id="lower"),
    ],
)
def test_exports_the_stdlib_reader_refuses_are_read(text: str, value: str, expires: int) -> None:
    (cookie,) = parse_cookies_txt(text)
    assert (cookie.name, cookie.value.reveal(), cookie.expires) == ("name", value, expires)
    assert cookie.include_subdomains and cookie.secure


def test_a_host_only_domain_marked_for_subdomains_is_read() -> None:
    # The stdlib asserts that the flag matches a leading dot and refuses the whole file.
    (cookie,) = parse_cookies_txt(HEADER + "www." + LINE.lstrip("."))
    assert cookie.domain == "www.midjourney.com" and cookie.include_subdomains


def test_http_only_is_kept() -> None:
    # The stdlib strips the #HttpOnly_ mark and forgets it.
    (cookie,) = parse_cookies_txt(HEADER + "#HttpOnly_" + LINE)
    assert cookie.http_only and cookie.domain == ".midjourney.com"


# -- file names: pathvalidate.sanitize_filename gives other names for all of these ----------
@pytest.mark.parametrize(
    ("name", "safe"),
    [
        ("CON", "_CON"),  # pathvalidate: CON_ (every existing view would be renamed)
        ("com1.png", "_com1.png"),
        ("nul .txt", "_nul .txt"),  # pathvalidate: kept as it is
        ("CONIN$", "_CONIN$"),  # pathvalidate: kept as it is
        ("..", "_"),  # pathvalidate: kept, a name that climbs
        ("...", "_"),  # pathvalidate: empty
        ("", "_"),
        ('a<b>c:d"e|f?g*h', "a_b_c_d_e_f_g_h"),  # pathvalidate drops them: abcdefgh
        ("x\x00y", "x_y"),
        ("\x85nel", "_nel"),  # a C1 control: pathvalidate keeps it
        ("\u202eevil\u202dgnp.exe", "_evil_gnp.exe"),  # bidi overrides: pathvalidate keeps them
        ("\ufeffbom", "_bom"),
        ("e\u0301", "\u00e9"),  # NFC: pathvalidate keeps the decomposed form
        ("\ud800lone", "_lone"),  # a lone surrogate: pathvalidate raises UnicodeEncodeError
    ],
)
def test_names_are_cleaned_as_before(name: str, safe: str) -> None:
    assert safe_component(name) == safe


def test_a_climbing_path_stays_inside() -> None:
    assert safe_relpath("../..") == "_/_"


# -- retries: stamina and tenacity keep no count across calls, nor reset it on progress -----
@contextlib.contextmanager
def transport(sleeps: list[float], **changes: object) -> Iterator[Transport]:
    """A transport that never reaches the network here: the attempts are plain callables."""
    settings = ClientSettings(
        max_retries=2, backoff_base=1.0, backoff_cap=60.0, breaker_threshold=100
    )
    client = Transport(settings.with_changes(**changes), sleep=sleeps.append, rng=lambda: 0.5)
    try:
        yield client
    finally:
        client.close()


def failing(times: int, received: list[int] | None = None) -> Callable[[], str]:
    """An attempt that fails ``times`` times, each after receiving one more byte."""
    calls = [0]

    def attempt() -> str:
        calls[0] += 1
        if received is not None:
            received[0] += 1
        if calls[0] <= times:
            raise Retryable(f"dropped after attempt {calls[0]}")
        return "done"

    return attempt


def test_progress_resets_the_retry_count() -> None:
    sleeps: list[float] = []
    received = [0]
    with transport(sleeps) as client:
        assert (
            client.with_retries(failing(5, received), what="download", progress=lambda: received[0])
            == "done"
        )
    # Each attempt got further than the one before: every wait is the first retry's.
    assert sleeps == [0.5] * 5


def test_without_progress_it_gives_up_after_max_retries() -> None:
    sleeps: list[float] = []
    with transport(sleeps) as client, pytest.raises(SourceError, match="gave up after 3 attempts"):
        client.with_retries(failing(5), what="listing")
    assert sleeps == [0.5, 1.0]  # full jitter, rng 0.5: half of base * 2**n


def test_the_breaker_counts_failures_over_calls() -> None:
    sleeps: list[float] = []
    with transport(sleeps, breaker_threshold=4) as client:
        with pytest.raises(SourceError, match="gave up"):
            client.with_retries(failing(9), what="first")  # 3 failures
        calls = [0]

        def counted() -> str:
            calls[0] += 1
            raise Retryable("still down")

        with pytest.raises(SourceUnavailable, match="4 failed requests in a row"):
            client.with_retries(counted, what="second")  # the 4th opens it
        with pytest.raises(SourceUnavailable):
            client.with_retries(counted, what="third")
    assert calls == [1]  # the open breaker refused the third call before any attempt


# -- the lock: filelock would replace one flock call; the note and the file stay ours -------
def test_a_refused_writer_leaves_the_holders_note(tmp_path: Path) -> None:
    with WriteLock(tmp_path, "mjvault sync"):
        with pytest.raises(VaultLocked, match="mjvault sync"):
            WriteLock(tmp_path, "mjvault gc", wait=0.0).acquire()
        holder = read_holder(tmp_path / "lock")
        assert holder is not None and holder["pid"] == os.getpid()
    # Released: the file stays (a waiter keeps the same inode) and names nobody.
    assert (tmp_path / "lock").exists() and read_holder(tmp_path / "lock") is None


# filelock opens its lock file with O_NOFOLLOW (CVE-2025-68146): so does the write lock now.
@pytest.mark.parametrize("step", ["acquire", "unlock"])
def test_a_lock_that_is_a_symlink_leaves_its_target_alone(tmp_path: Path, step: str) -> None:
    vault_root = tmp_path / "vault"
    vault_root.mkdir()
    victim = tmp_path / "elsewhere.txt"
    victim.write_text("not the vault's to truncate\n")
    (vault_root / "lock").symlink_to(victim)
    with pytest.raises(MjvaultError, match="is a symbolic link"):
        if step == "acquire":
            WriteLock(vault_root, "mjvault sync").acquire()
        else:
            break_lock(vault_root)
    assert victim.read_text() == "not the vault's to truncate\n"


@pytest.mark.parametrize("command", ["unlock", "gc"])
def test_the_cli_refuses_a_symlinked_lock_in_one_line(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    command: str,
) -> None:
    for key in list(os.environ):
        if key.startswith("MJVAULT_"):
            monkeypatch.delenv(key)
    Vault.init(tmp_path / "vault").close()
    victim = tmp_path / "elsewhere.txt"
    victim.write_text('{"pid": 1}')
    lock = tmp_path / "vault" / "lock"
    lock.unlink(missing_ok=True)
    lock.symlink_to(victim)
    with pytest.raises(SystemExit) as exited:
        run(["--vault", str(tmp_path / "vault"), command])
    assert exited.value.code not in (0, None)
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is a symbolic link" in err and "Traceback" not in err
    assert victim.read_text() == '{"pid": 1}'


def test_a_held_lock_reported_as_eacces_is_held(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Python's fcntl documentation: a flock that finds the lock held fails with EACCES or
    # EAGAIN depending on the system (filelock counts both as held too). No file system here
    # answers EACCES, so a real held lock's EAGAIN is given as EACCES.
    real_flock = fcntl.flock

    def flock_as_eacces(fd: int, operation: int) -> None:
        try:
            real_flock(fd, operation)
        except BlockingIOError:
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES)) from None

    with WriteLock(tmp_path, "mjvault sync"):
        monkeypatch.setattr(fcntl, "flock", flock_as_eacces)
        with pytest.raises(VaultLocked, match="mjvault sync"):
            WriteLock(tmp_path, "mjvault gc", wait=0.0).acquire()
        with pytest.raises(VaultLocked, match="held by a running process"):
            break_lock(tmp_path)
