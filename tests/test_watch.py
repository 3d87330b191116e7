"""Unattended sync: `sync --watch` against the bundled Midjourney server in a real process
(new jobs archived within an interval, backoff on faults and recovery, SIGTERM and Ctrl-C
leaving a clean vault), pushes to auto-push and --push remotes (real folder remotes), a
verify subset, --if-idle against a real lock, and the interval and backoff rules."""

from __future__ import annotations

import contextlib
import gc
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import tracemalloc
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mjvault import Vault
from mjvault.config.schema import build_config
from mjvault.errors import (
    AuthError,
    ChallengeError,
    MjvaultError,
    SourceError,
    UsageError,
    VaultLocked,
    VaultWriteError,
)
from mjvault.followups import FollowupSettings
from mjvault.integrity.reachability import checkpoint_tree
from mjvault.lock import WriteLock, read_holder
from mjvault.notify import Notifier
from mjvault.sources.midjourney import MidjourneyClient
from mjvault.sync import SyncOptions
from mjvault.testing.accounts import Account
from mjvault.testing.faults import Faults
from mjvault.testing.server import FakeMidjourney
from mjvault.watch import (
    Backoff,
    CycleResult,
    SyncCycle,
    backoff_cap,
    cycle_failure,
    parse_interval,
    watch,
)
from tests.conftest import Result, invoke_cli, run_cli
from tests.test_notify import Receiver
from tests.test_sync import TOKEN, assert_complete, cli_env, settings_for
from tests.test_sync_kill import assert_verifies, wait_for_media_requests

JOBS = 12
FAST = ("--max-rps", "1000", "--jobs", "4")


@pytest.fixture
def server() -> Iterator[FakeMidjourney]:
    with FakeMidjourney(Account.generate(29, JOBS), token=TOKEN) as running:
        yield running


@pytest.fixture
def vault_path(tmp_path: Path) -> Path:
    Vault.init(tmp_path / "vault").close()
    return tmp_path / "vault"


Cli = Callable[..., Result]


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch, server: FakeMidjourney, vault_path: Path) -> Cli:
    """`mjvault --vault VAULT ARGS` in this process, pointed at the bundled server."""
    for key in list(os.environ):
        if key.startswith("MJVAULT_"):
            monkeypatch.delenv(key)
    for key, value in cli_env(server).items():
        monkeypatch.setenv(key, value)
    return lambda *args: Result.of(invoke_cli(["--vault", str(vault_path), *args]))


def start_watch(
    vault_path: Path,
    server: FakeMidjourney,
    log: Path,
    *extra: str,
    every: str = "1s",
    root: tuple[str, ...] = (),
) -> subprocess.Popen[bytes]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("MJVAULT_")}
    environ.update(cli_env(server))
    command = [sys.executable, "-m", "mjvault", *root, "--vault", str(vault_path), "--log-file"]
    command += [str(log), "sync", *FAST, "--watch", "--every", every, *extra]
    return subprocess.Popen(command, env=environ, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def cycles(log: Path) -> list[dict[str, str]]:
    """The per-cycle lines of the log, as their fields."""
    if not log.exists():
        return []
    found = []
    for line in log.read_text().splitlines():
        if 'msg="watch cycle' in line:
            fields = dict(re.findall(r'(\w+)=("(?:[^"\\]|\\.)*"|\S+)', line))
            found.append({k: v.strip('"') for k, v in fields.items()})
    return found


def wait_until(
    test: Callable[[], bool], process: subprocess.Popen[bytes], timeout: float, what: str
) -> float:
    """Seconds until ``test()`` held; fails if the process ended or time ran out first."""
    started = time.monotonic()
    while not test():
        if process.poll() is not None:
            out, err = process.communicate()
            pytest.fail(f"watch ended ({process.returncode}) before {what}: {err.decode()}")
        if time.monotonic() - started > timeout:
            process.kill()
            pytest.fail(f"no {what} within {timeout} s")
        time.sleep(0.02)
    return time.monotonic() - started


def stop(process: subprocess.Popen[bytes], signum: int = signal.SIGTERM) -> tuple[int, str]:
    code, _out, err = stopped(process, signum)
    return code, err


def stopped(process: subprocess.Popen[bytes], signum: int) -> tuple[int, str, str]:
    process.send_signal(signum)
    try:
        out, err = process.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        pytest.fail("the watch did not stop within 20 s of the signal")
    return process.returncode, out.decode(), err.decode()


def assert_unlocked(vault_path: Path) -> None:
    assert read_holder(vault_path / "lock") is None
    WriteLock(vault_path, "test").acquire().release()  # nobody holds the flock either


# -- the watch loop, in a real process ---------------------------------------------------------


def test_watch_archives_new_jobs_within_an_interval_pushes_and_stops_on_sigterm(
    server: FakeMidjourney, vault_path: Path, tmp_path: Path, cli: Cli
) -> None:
    added = cli("remote", "add", "nas", str(tmp_path / "nas"), "--auto-push")
    assert added.code == 0, added.err
    log = tmp_path / "watch.log"
    process = start_watch(vault_path, server, log, root=("--json",))
    wait_until(lambda: len(cycles(log)) >= 1, process, 30, "first cycle")
    assert cycles(log)[0]["new_jobs"] == str(JOBS)

    new = server.add_jobs(3)
    seen = len(cycles(log))
    took = wait_until(
        lambda: any(c.get("new_jobs") == "3" for c in cycles(log)[seen:]),
        process,
        15,
        "cycle archiving the added jobs",
    )
    assert took < 1 + 5, f"new jobs took {took:.1f} s with a 1 s interval"
    line = next(c for c in cycles(log)[seen:] if c.get("new_jobs") == "3")
    assert line["missing_images"] == "0" and line["pushes_failed"] == "0"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", line["next_run"])

    code, out, err = stopped(process, signal.SIGTERM)
    assert code == 0, err
    assert "Traceback" not in err
    # --json: one object per cycle, one per line.
    shown = [json.loads(line) for line in out.splitlines()]
    assert shown[0]["new_jobs"] == JOBS and shown[0]["ok"] and shown[0]["snapshot"]
    assert any(c["new_jobs"] == 3 and c["pushes"][0]["ok"] for c in shown)
    assert_unlocked(vault_path)
    assert_verifies(vault_path)
    assert_complete(vault_path, server.account)
    with Vault.open(vault_path) as vault:
        assert any(entry.job_id == new[0].id for entry in vault.entries())
    # The auto-push remote holds every snapshot of the vault, the newest included.
    info = cli("--json", "remote", "info", "nas")
    assert info.code == 0, info.err
    held = info.json()
    assert held["local_snapshots_held"] == held["local_snapshots"] >= 2


def test_sigterm_mid_sync_checkpoints_and_the_next_run_completes(
    vault_path: Path, tmp_path: Path
) -> None:
    account = Account.generate(53, 100)
    with FakeMidjourney(account, Faults(latency=0.004), token=TOKEN) as slow:
        process = start_watch(vault_path, slow, tmp_path / "log", "--checkpoint-jobs", "6")
        wait_for_media_requests(slow, process, 60)
        assert process.poll() is None, "the first sync ended before the signal"
        started = time.monotonic()
        code, err = stop(process)
        assert code == 0, err
        assert time.monotonic() - started < 10
        assert "Traceback" not in err
        assert_unlocked(vault_path)
        assert_verifies(vault_path)
        with Vault.open(vault_path) as vault:
            partial = checkpoint_tree(vault)
            kept = sum(1 for _ in vault.tree.walk(partial)) if partial else 0
        assert 0 < kept < len(account.jobs), "the checkpoint keeps part of the run"
        # The cut-short cycle says what it stored before the stop.
        cut = [c for c in cycles(tmp_path / "log") if c["msg"] == "watch cycle interrupted"]
        assert len(cut) == 1 and int(cut[0]["new_jobs"]) > 0, cycles(tmp_path / "log")
        finish = run_cli("--vault", str(vault_path), "sync", *FAST, env=cli_env(slow))
        assert finish.returncode == 0, finish.stderr
        assert_complete(vault_path, account)


def test_sigterm_stops_a_one_shot_sync_with_a_checkpoint_and_exit_130(
    vault_path: Path, tmp_path: Path
) -> None:
    account = Account.generate(53, 100)
    with FakeMidjourney(account, Faults(latency=0.004), token=TOKEN) as slow:
        environ = {k: v for k, v in os.environ.items() if not k.startswith("MJVAULT_")}
        environ |= cli_env(slow)
        command = [sys.executable, "-m", "mjvault", "--vault", str(vault_path), "sync", *FAST]
        process = subprocess.Popen(
            [*command, "--checkpoint-jobs", "6"],
            env=environ,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        wait_for_media_requests(slow, process, 60)
        assert process.poll() is None, "the sync ended before the signal"
        code, err = stop(process)
        assert code == 130, err  # interrupted: rerun to resume (docs/usage.md)
        assert err.count("\n") == 1 and "interrupted" in err and "rerun" in err, err
        assert_unlocked(vault_path)
        assert_verifies(vault_path)
        with Vault.open(vault_path) as vault:
            partial = checkpoint_tree(vault)
            kept = sum(1 for _ in vault.tree.walk(partial)) if partial else 0
        assert 0 < kept < len(account.jobs), "the checkpoint keeps part of the run"
        media_before = slow.stats.media_requests
        finish = run_cli(*command[3:], env=cli_env(slow))
        assert finish.returncode == 0, finish.stderr
        assert_complete(vault_path, account)
        # Resumed: what the checkpoint kept was not downloaded again.
        assert slow.stats.media_requests - media_before < len(account.jobs) * 4


def mjvault_json(vault_path: Path, *args: str) -> Any:
    done = invoke_cli(["--vault", str(vault_path), *args])
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout) if "--json" in args else None


def add_remote(vault_path: Path, where: Path, *flags: str) -> None:
    mjvault_json(vault_path, "remote", "add", "nas", str(where), *flags)


def snapshots_pushed(vault_path: Path) -> int:
    held: int = mjvault_json(vault_path, "--json", "remote", "info", "nas")["snapshots"]["count"]
    return held


def run_with_a_stop_at_merge(
    vault_path: Path, server: FakeMidjourney, log: Path, signum: str, *args: str
) -> subprocess.Popen[bytes]:
    """``mjvault ARGS`` whose first sync is sent ``signum`` while it merges its run's packs,
    the step after the snapshot that swallows the interrupt (tests/signal_at_merge.py)."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("MJVAULT_")}
    environ |= cli_env(server) | {"SIGNAL_AT_MERGE": signum}
    driver = Path(__file__).with_name("signal_at_merge.py")
    command = [sys.executable, str(driver), "--vault", str(vault_path), "--log-file", str(log)]
    return subprocess.Popen(
        [*command, *args], env=environ, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )


@pytest.mark.parametrize(("signum", "code"), [("SIGTERM", 0), ("SIGINT", 130)])
def test_a_stop_signal_during_the_pack_merge_still_stops_the_watch(
    server: FakeMidjourney, vault_path: Path, tmp_path: Path, signum: str, code: int
) -> None:
    add_remote(vault_path, tmp_path / "nas", "--auto-push")
    log = tmp_path / "watch.log"
    process = run_with_a_stop_at_merge(
        vault_path, server, log, signum, "sync", *FAST, "--watch", "--every", "1s"
    )
    try:
        out, err = process.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        pytest.fail(f"the watch ran on after {signum}: {cycles(log)}")
    assert process.returncode == code, err
    assert "Traceback" not in err.decode()
    assert snapshots_pushed(vault_path) == 0  # the stop came before the follow-ups
    assert_unlocked(vault_path)
    assert_verifies(vault_path)
    assert_complete(vault_path, server.account)  # the snapshot was published before the stop


def test_a_stop_signal_during_the_pack_merge_stops_a_one_shot_sync_with_130(
    server: FakeMidjourney, vault_path: Path, tmp_path: Path
) -> None:
    add_remote(vault_path, tmp_path / "nas")
    process = run_with_a_stop_at_merge(
        vault_path, server, tmp_path / "sync.log", "SIGTERM", "sync", *FAST, "--push", "nas"
    )
    out, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    assert err.decode().splitlines()[-1].startswith("mjvault: error: interrupted"), err
    assert snapshots_pushed(vault_path) == 0
    assert_unlocked(vault_path)
    assert_verifies(vault_path)
    assert_complete(vault_path, server.account)


def test_faults_back_off_and_the_watch_recovers_once_they_clear(
    server: FakeMidjourney, vault_path: Path, tmp_path: Path
) -> None:
    log = tmp_path / "watch.log"
    server.faults = Faults(non_object_page=1)  # every listing's first page is unusable
    process = start_watch(vault_path, server, log, every="1s")
    failed = lambda: [c for c in cycles(log) if "failures" in c]  # noqa: E731
    wait_until(lambda: len(failed()) >= 2, process, 20, "two failed cycles")
    # The wait doubles per failure in a row: 2 s, then 4 s (interval 1 s, cap 8 s).
    assert [float(c["retry_in"]) for c in failed()[:2]] == [2.0, 4.0]
    assert failed()[0]["error"] == "BadListingPage"

    # A refused cookie is the user's to fix: the next retry waits the whole cap at once.
    server.faults = Faults(expired=True)
    wait_until(
        lambda: any(c["error"] == "SessionRefused" for c in failed()), process, 20, "auth fail"
    )
    refused = next(c for c in failed() if c["error"] == "SessionRefused")
    assert float(refused["retry_in"]) == backoff_cap(1) == 8.0

    server.faults = Faults()
    wait_until(
        lambda: any(c.get("new_jobs") == str(JOBS) for c in cycles(log)),
        process,
        20,
        "a cycle after the faults cleared",
    )
    ok = next(c for c in cycles(log) if c.get("new_jobs") == str(JOBS))
    assert "failures" not in ok and ok["missing_images"] == "0"
    # Ctrl-C while it sleeps: stops at once, exit 130 (interrupted), nothing left locked.
    code, err = stop(process, signal.SIGINT)
    assert code == 130, err
    assert "the vault is consistent" in err and "Traceback" not in err
    assert_unlocked(vault_path)
    assert_complete(vault_path, server.account)


# -- one-shot follow-ups and --if-idle, in process -------------------------------------------


def test_if_idle_exits_0_with_one_line_while_another_writer_holds_the_lock(
    server: FakeMidjourney, vault_path: Path, cli: Cli
) -> None:
    lock = WriteLock(vault_path, "mjvault import").acquire()
    try:
        ran = cli("sync", *FAST, "--if-idle")
        assert ran.code == 0, ran.err
        lines = ran.err.strip().splitlines()
        assert len(lines) == 1 and "skipped (--if-idle)" in lines[0], ran.err
        assert "mjvault import" in lines[0]
        assert server.stats.total_listing_requests() == 0
        # The same in watch mode: it never starts.
        watched = cli("sync", *FAST, "--watch", "--every", "1m", "--if-idle")
        assert watched.code == 0, watched.err
        assert "skipped (--if-idle)" in watched.err
        # Without --if-idle a locked vault is an error, as before.
        refused = cli("sync", *FAST)
        assert refused.code == 11 and "locked" in refused.err
    finally:
        lock.release()
    ran = cli("sync", *FAST, "--if-idle")
    assert ran.code == 0, ran.err
    assert_complete(vault_path, server.account)


def test_if_idle_skips_while_another_writer_holds_the_lock_even_if_credentials_fail(
    server: FakeMidjourney,
    vault_path: Path,
    tmp_path: Path,
    cli: Cli,
    receiver: Receiver,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pytest.importorskip("yt_dlp", reason="yt-dlp is not installed (mjvault[browser])")
    monkeypatch.setenv("MJVAULT_NOTIFY_URLS", receiver.url)
    profile = tmp_path / "firefox-profile"
    profile.mkdir()  # no cookie database: the credentials cannot be read
    browser = ("--cookies-from-browser", f"firefox:{profile}")
    lock = WriteLock(vault_path, "mjvault import").acquire()
    try:
        ran = cli("sync", *FAST, "--if-idle", *browser)
    finally:
        lock.release()
    assert ran.code == 0, ran.err
    lines = ran.err.strip().splitlines()
    assert len(lines) == 1 and "skipped (--if-idle)" in lines[0], ran.err
    assert "mjvault import" in lines[0]
    assert not receiver.received
    # A note left by a writer that died names nobody at work: the failure is the run's own.
    (vault_path / "lock").write_text(
        json.dumps({"pid": dead_pid(), "host": socket.gethostname(), "time": 0})
    )
    failed = cli("sync", *FAST, "--if-idle", *browser)
    assert failed.code == 2, failed.err
    assert [m["title"] for m in receiver.received] == ["mjvault: sync failed"]


def dead_pid() -> int:
    """The pid of a process that has ended (and been reaped)."""
    ended = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True
    )
    return int(ended.stdout)


def test_if_idle_takes_the_lock_once_without_a_look_first(
    server: FakeMidjourney, vault_path: Path, cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A look that takes the lock and lets it go holds it for an instant: a writer starting
    # then would fail. --if-idle takes it once, as the sync, and skips on VaultLocked.
    taken: list[str] = []
    acquire = WriteLock.acquire

    def counted(self: WriteLock) -> WriteLock:
        taken.append(type(self).__name__)
        return acquire(self)

    monkeypatch.setattr(WriteLock, "acquire", counted)
    ran = cli("sync", *FAST, "--if-idle")
    assert ran.code == 0, ran.err
    assert len(taken) == 1, taken
    assert_complete(vault_path, server.account)


def test_quiet_sync_prints_nothing_and_logs_its_summary(
    server: FakeMidjourney, vault_path: Path, tmp_path: Path, cli: Cli
) -> None:
    log = tmp_path / "sync.log"
    ran = cli("-q", "--log-file", str(log), "sync", *FAST)
    assert ran.code == 0, ran.err
    assert ran.out == "" and ran.err == ""  # -q: only errors (what a timer's mail carries)
    lines = [line for line in log.read_text().splitlines() if 'msg="sync finished"' in line]
    assert len(lines) == 1, log.read_text()
    assert f"jobs_new={JOBS}" in lines[0] and "images_missing=0" in lines[0]
    shown = cli("sync", *FAST)  # without -q the summary is still shown
    assert "vault already up to date" in shown.out and 'msg="sync finished"' not in shown.err


def test_a_failed_sync_writes_its_error_to_the_log_file_and_once_on_stderr(
    server: FakeMidjourney, vault_path: Path, tmp_path: Path, cli: Cli
) -> None:
    log = tmp_path / "sync.log"
    server.faults = Faults(expired=True)
    ran = cli("-q", "--log-file", str(log), "sync", *FAST)
    assert ran.code == 1
    assert len(ran.err.strip().splitlines()) == 1 and ran.err.startswith("mjvault: error:")
    errors = [line for line in log.read_text().splitlines() if "level=error" in line]
    assert len(errors) == 1, log.read_text()
    assert "error=SessionRefused" in errors[0] and "exit=1" in errors[0]
    assert TOKEN not in log.read_text()


def test_a_failed_push_exits_4_and_keeps_the_synced_jobs(
    server: FakeMidjourney, vault_path: Path, tmp_path: Path, cli: Cli
) -> None:
    good, broken = tmp_path / "good", tmp_path / "broken"
    assert cli("remote", "add", "good", str(good)).code == 0
    assert cli("remote", "add", "broken", str(broken)).code == 0
    # The remote's folder is gone and a plain file stands in its place (an unmounted disk).
    import shutil

    shutil.rmtree(broken)
    broken.write_text("not a remote")
    ran = cli("--json", "sync", *FAST, "--push", "broken", "--push", "good")
    assert ran.code == 4, ran.err
    assert "push to broken failed" in ran.err and "Traceback" not in ran.err
    pushes = {p["remote"]: p for p in ran.json()["pushes"]}
    assert not pushes["broken"]["ok"] and pushes["broken"]["error"]
    assert pushes["good"]["ok"], "one failing remote does not stop the others"
    assert_complete(vault_path, server.account)
    assert_verifies(vault_path)


def test_verify_subset_after_sync(server: FakeMidjourney, vault_path: Path, cli: Cli) -> None:
    ran = cli("sync", *FAST, "--verify-subset", "100%")
    assert ran.code == 0, ran.err
    assert "verified a 100% subset: no problems" in ran.out
    checked = cli("--json", "sync", *FAST, "--verify-subset", "1/2")
    assert checked.code == 0, checked.err
    assert checked.json()["verify"]["ok"] and checked.json()["verify"]["subset"] == "1/2"
    bad = cli("sync", "--verify-subset", "150%")
    assert bad.code == 2 and len(bad.err.strip().splitlines()) == 1


def test_verify_subset_problems_exit_3(server: FakeMidjourney, vault_path: Path, cli: Cli) -> None:
    assert cli("sync", *FAST).code == 0
    # Damage one stored object behind the vault's back: the next verify must say so.
    with Vault.open(vault_path) as vault:
        image = next(i for entry in vault.entries() for i in entry.images if i)
        target = vault.object_path(image)
    if not target.is_file():
        pytest.skip("the image is packed; this test damages a loose object")
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0xFF
    target.write_bytes(bytes(data))
    server.add_jobs(1)
    ran = cli("sync", *FAST, "--verify-subset", "100%")
    assert ran.code == 3, ran.err
    assert "found" in ran.err and "problems" in ran.err


def test_remote_auto_push_on_and_off(vault_path: Path, tmp_path: Path, cli: Cli) -> None:
    assert cli("remote", "add", "nas", str(tmp_path / "nas")).code == 0
    listed = cli("--json", "remote", "list")
    assert listed.json()[0]["auto_push"] is False
    on = cli("remote", "set", "nas", "--auto-push")
    assert on.code == 0 and "auto-push on" in on.out
    assert "(auto-push)" in cli("remote", "list").out
    off = cli("remote", "set", "nas", "--no-auto-push")
    assert off.code == 0 and "(auto-push)" not in cli("remote", "list").out
    nothing = cli("remote", "set", "nas")
    assert nothing.code == 2 and len(nothing.err.strip().splitlines()) == 1
    missing = cli("remote", "set", "nope", "--auto-push")
    assert missing.code != 0 and "no remote named nope" in missing.err
    # Files written before the field existed load with auto-push off.
    spec = vault_path / "remotes" / "nas.json"
    doc = json.loads(spec.read_text())
    del doc["auto_push"]
    spec.write_text(json.dumps(doc))
    assert cli("--json", "remote", "list").json()[0]["auto_push"] is False


def test_bad_intervals_and_combinations_are_one_line_errors(vault_path: Path, cli: Cli) -> None:
    for args in (
        ("--watch", "--every", "soon"),
        ("--watch", "--every", "0s"),
        ("--watch", "--every", "110000d"),  # overflowed the wait: a traceback
        ("--watch", "--every", "0.001s"),  # a busy loop against the service
        ("--every", "10m"),
        ("--dry-run", "--watch"),
        ("--push", "../x"),
    ):
        ran = cli("sync", *args)
        assert ran.code == 2, (args, ran.err)
        assert len(ran.err.strip().splitlines()) == 1 and "Traceback" not in ran.err


def test_a_watch_without_any_credentials_stops_at_once(
    vault_path: Path, cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MIDJOURNEY_SESSION_TOKEN")
    ran = cli("sync", "--watch", "--every", "1h")
    assert ran.code == 1, ran.err
    lines = ran.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mjvault: error: no Midjourney session")


def test_a_watch_with_a_bad_browser_option_stops_at_once(
    vault_path: Path, tmp_path: Path, cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("yt_dlp", reason="yt-dlp is not installed (mjvault[browser])")
    nowhere = tmp_path / "no-such-profile"
    cases = {
        f"chromium:{nowhere}": f"no chromium profile at {nowhere}",
        "netscape": "unknown browser 'netscape'",
    }
    for spec, said in cases.items():
        ran = cli("sync", "--watch", "--every", "1h", "--cookies-from-browser", spec)
        assert ran.code == 2, ran.err
        lines = ran.err.strip().splitlines()
        assert len(lines) == 1 and said in lines[0], ran.err
    monkeypatch.setitem(sys.modules, "yt_dlp.cookies", None)  # an install without the extra
    ran = cli("sync", "--watch", "--every", "1h", "--cookies-from-browser", "chromium")
    assert ran.code == 2 and "needs the optional yt-dlp package" in ran.err, ran.err


def test_a_json_cycle_line_masks_secrets_in_its_error(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from types import SimpleNamespace

    from mjvault.cli.watch import _show
    from mjvault.redact import register_secret
    from mjvault.watch import CycleResult

    secret = "sess-cycle-json-4f1e9a"
    register_secret(secret)
    app = SimpleNamespace(json_output=True, verbosity=0)
    failed = CycleResult(error=SourceError(f"refused with cookie {secret}"))
    _show(app, failed, 60.0)  # type: ignore[arg-type]
    line = json.loads(capsys.readouterr().out)
    assert secret not in line["error"] and line["error"].startswith("refused with cookie ")


def test_the_configured_interval_is_checked(
    vault_path: Path, cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MJVAULT_SYNC_EVERY", "soon")
    ran = cli("sync", "--watch")
    assert ran.code == 2 and "sync.every" in ran.err and "Traceback" not in ran.err


# -- the loop in process: stop event, flat memory -----------------------------------------------


@contextmanager
def _opened(path: Path) -> Iterator[Vault]:
    vault = Vault.open(path)
    try:
        yield vault
    finally:
        vault.close()


def test_the_loop_stops_from_another_thread_and_its_memory_stays_flat(
    server: FakeMidjourney, vault_path: Path
) -> None:
    stop = threading.Event()
    cycle = SyncCycle(
        open_vault=lambda: _opened(vault_path),
        open_client=lambda: MidjourneyClient(settings_for(server)),
        options=SyncOptions(concurrency=4, thumbnails=False),
        notifier=Notifier.from_config(build_config({})),
        stop=stop,
    )
    watch(cycle, every=0.001, max_cycles=5)  # warm: caches, imports, the first full sync
    tracemalloc.start()
    try:
        gc.collect()  # each vault open makes a few ctypes classes: cycles, freed by the collector
        before = tracemalloc.get_traced_memory()[0]
        summary = watch(cycle, every=0.001, max_cycles=30)
        gc.collect()
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert summary.cycles == 30 and summary.failed_cycles == 0
    # Measured: about 12 KB per 30 cycles, server threads included (docs/design.md).
    assert grown < 150 * 1024, f"{grown} bytes kept over 30 cycles"

    timer = threading.Timer(0.3, stop.set)
    timer.start()
    started = time.monotonic()
    ended = watch(cycle, every=3600, stop=stop)
    assert ended.stopped and time.monotonic() - started < 2, "the wait woke on the stop"


def _open_handles(name: str) -> int:
    """Descriptors of this process open on a file called ``name``."""
    found = 0
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            if os.readlink(f"/proc/self/fd/{fd}").endswith(name):
                found += 1
    return found


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="counts /proc/self/fd")
def test_cycles_with_thumbnails_leave_no_connection_open(
    server: FakeMidjourney, vault_path: Path
) -> None:
    cycle = SyncCycle(
        open_vault=lambda: _opened(vault_path),
        open_client=lambda: MidjourneyClient(settings_for(server)),
        options=SyncOptions(concurrency=4, thumbnails=True),
        notifier=Notifier.from_config(build_config({})),
        stop=threading.Event(),
    )
    gc.disable()  # the collector used to be what closed them: it must not be needed
    try:
        for _ in range(6):
            server.add_jobs(1)
            result = cycle()
            assert result.error is None, result.error
            assert result.report is not None and result.report.thumbnails_made
            assert _open_handles("thumbs.sqlite") == 0
    finally:
        gc.enable()


class Recorded(Notifier):
    """The notifier interface, recording what each cycle asked it to say."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[str, str]] = []

    def sync_finished(self, report: Any, *, vault: str) -> None:
        self.calls.append(("sync_finished", str(report.jobs_new)))

    def failed(self, what: str, error: BaseException, *, vault: str) -> None:
        self.calls.append(("failed", f"{what}: {type(error).__name__}"))

    def push_failed(self, remote: str, error: BaseException, *, vault: str) -> None:
        self.calls.append(("push_failed", remote))

    def verify_finished(self, problems: int, summary: str, *, vault: str) -> None:
        self.calls.append(("verify_finished", str(problems)))


def test_each_cycle_notifies_new_jobs_failures_and_failed_pushes(
    server: FakeMidjourney, vault_path: Path, tmp_path: Path, cli: Cli
) -> None:
    assert cli("remote", "add", "gone", str(tmp_path / "gone"), "--auto-push").code == 0
    (tmp_path / "gone" / "config").unlink()  # no longer a remote: every push to it fails
    notifier = Recorded()
    cycle = SyncCycle(
        open_vault=lambda: _opened(vault_path),
        open_client=lambda: MidjourneyClient(settings_for(server)),
        options=SyncOptions(concurrency=4, thumbnails=False),
        notifier=notifier,
        stop=threading.Event(),
        followups=FollowupSettings(verify_subset="100%"),
    )
    first = cycle()
    assert first.new_jobs == JOBS and first.push_failed and first.verify is not None
    # The news first: a follow-up that fails cannot swallow it.
    assert notifier.calls == [("sync_finished", str(JOBS)), ("push_failed", "gone")]
    notifier.calls.clear()
    # Idle: no news; the remote still behind is tried again (it may be back).
    assert cycle().error is None and notifier.calls == [("push_failed", "gone")]
    notifier.calls.clear()
    server.faults = Faults(expired=True)
    failed = cycle()
    assert isinstance(failed.error, AuthError)
    assert notifier.calls == [("failed", f"sync: {type(failed.error).__name__}")]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    running = Receiver()
    yield running
    running.close()


def _notified_cycle(
    server: FakeMidjourney, vault_path: Path, receiver: Receiver, **extra: Any
) -> SyncCycle:
    """One watch cycle over the vault that tells the receiver of changes only, as a watch does."""
    return SyncCycle(
        open_vault=lambda: _opened(vault_path),
        open_client=lambda: MidjourneyClient(settings_for(server)),
        options=SyncOptions(concurrency=4, thumbnails=False),
        notifier=Notifier([receiver.url], changes_only=True),
        stop=threading.Event(),
        **extra,
    )


def test_a_persisting_problem_is_notified_once_then_its_recovery(
    server: FakeMidjourney, vault_path: Path, receiver: Receiver
) -> None:
    cycle = _notified_cycle(server, vault_path, receiver)
    assert cycle().error is None
    assert [m["title"] for m in receiver.received] == [f"mjvault: {JOBS} new jobs"]
    receiver.received.clear()
    server.faults = Faults(expired=True)  # the cookie expired: the user is asleep
    for _ in range(3):
        assert isinstance(cycle().error, AuthError)
    assert [m["title"] for m in receiver.received] == ["mjvault: sync failed"]
    server.faults = Faults()
    assert cycle().error is None and cycle().error is None
    assert [m["title"] for m in receiver.received] == [
        "mjvault: sync failed",
        "mjvault: sync recovered",
    ]
    server.faults = Faults(expired=True)  # the same problem again, after a recovery: news
    assert isinstance(cycle().error, AuthError)
    assert len(receiver.received) == 3


def test_a_verify_problem_that_persists_is_notified_once(
    server: FakeMidjourney, vault_path: Path, receiver: Receiver
) -> None:
    cycle = _notified_cycle(
        server, vault_path, receiver, followups=FollowupSettings(verify_subset="100%")
    )
    assert cycle().verify is not None
    receiver.received.clear()
    with Vault.open(vault_path) as vault:  # one stored image damaged behind its back
        image = next(i for entry in vault.entries() for i in entry.images if i)
        target = vault.object_path(image)
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0xFF
    target.write_bytes(bytes(data))
    for _ in range(3):
        result = cycle()
        assert result.verify is not None and not result.verify.ok
    assert [m["title"][:25] for m in receiver.received] == ["mjvault: verify found 1 p"]


def test_a_follow_up_that_raises_still_sends_the_news_and_its_failure(
    server: FakeMidjourney, vault_path: Path, receiver: Receiver
) -> None:
    def held_elsewhere(_vault: Vault, _report: Any) -> None:
        raise VaultLocked("the vault is locked by another writer")

    cycle = _notified_cycle(server, vault_path, receiver, after_sync=held_elsewhere)
    result = cycle()
    assert isinstance(result.error, VaultLocked) and result.new_jobs == JOBS
    titles = [m["title"] for m in receiver.received]
    assert titles == [f"mjvault: {JOBS} new jobs", "mjvault: sync follow-up failed"]


# -- rules ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30s", 30),
        ("10m", 600),
        ("6h", 21600),
        ("1d", 86400),
        ("1.5", 1.5),
        ("1", 1),
        ("31d", 31 * 86400),
    ],
)
def test_intervals(text: str, seconds: float) -> None:
    assert parse_interval(text) == seconds


@pytest.mark.parametrize(
    "text", ["", "0s", "0", "soon", "-1m", "10 m x", "0.5", "0.001s", "32d", "110000d"]
)
def test_bad_intervals(text: str) -> None:
    with pytest.raises(UsageError):
        parse_interval(text)


def test_a_failure_never_waits_less_than_the_floor() -> None:
    from mjvault.watch import failure_floor

    assert failure_floor(600) == 60 and failure_floor(1) == 1
    backoff = Backoff(1, floor=failure_floor(90))
    assert backoff.failed() == 60 and backoff.cap == 60  # not 2 s: a minute at least
    assert backoff.succeeded() == 1


def test_cap() -> None:
    assert backoff_cap(1) == 8
    assert backoff_cap(600) == 3600  # 8 intervals would be 80 min: an hour at most
    assert backoff_cap(6 * 3600) == 6 * 3600  # never shorter than the interval


outcomes = st.lists(st.sampled_from(["ok", "error", "auth", "challenge"]), max_size=80)


@given(every=st.floats(0.5, 86400), steps=outcomes)
def test_backoff_never_exceeds_the_cap_and_resets_on_success(
    every: float, steps: list[str]
) -> None:
    backoff = Backoff(every)
    previous = None
    for step in steps:
        if step == "ok":
            wait = backoff.succeeded()
            assert wait == every and backoff.failures == 0
            previous = None
            continue
        error = {
            "error": SourceError("listing failed"),
            "auth": AuthError("cookie expired"),
            "challenge": ChallengeError("Cloudflare"),
        }[step]
        wait = backoff.failed(error)
        assert every <= wait <= backoff.cap
        if step != "error":
            assert wait == backoff.cap  # the user must act: no fast retries
        elif previous is not None:
            assert wait == min(backoff.cap, previous * 2) or previous == backoff.cap
        previous = wait


# -- a cycle's unexpected failures ---------------------------------------------------------------


def test_a_full_disk_in_a_follow_up_fails_the_cycle_not_the_watch(
    server: FakeMidjourney, tmp_path: Path
) -> None:
    from tests.fullfs import small_fs

    with small_fs(tmp_path / "small", size="16m") as disk:
        vault_path = disk.path / "vault"
        Vault.init(vault_path).close()

        def fill_then_write(vault: Vault, _report: Any) -> None:
            # After the sync stored its jobs the disk fills up; the follow-up's write gets the
            # bare OSError (ENOSPC) that a retention or pack merge would meet.
            if not disk.is_full():
                disk.fill()
            (vault.path / "note").write_bytes(b"x" * 65536)

        notifier = Recorded()
        cycle = SyncCycle(
            open_vault=lambda: _opened(vault_path),
            open_client=lambda: MidjourneyClient(settings_for(server)),
            options=SyncOptions(concurrency=4, thumbnails=False),
            notifier=notifier,
            stop=threading.Event(),
            after_sync=fill_then_write,
        )
        seen: list[CycleResult] = []
        try:
            summary = watch(cycle, every=0.01, max_cycles=2, on_cycle=lambda r, _w: seen.append(r))
        finally:
            disk.free()
        assert summary.cycles == 2 and summary.failed_cycles == 2  # the loop went on
        first = seen[0]
        assert first.report is not None and first.report.jobs_new == JOBS  # stored, then failed
        assert isinstance(first.error, VaultWriteError)
        assert "No space left on device" in str(first.error)
        cycle.after_sync = None
        assert cycle().error is None  # space again: the next cycle succeeds
        assert_complete(vault_path, server.account)


def test_an_oserror_becomes_a_one_line_failure_naming_the_path() -> None:
    error = cycle_failure(OSError(28, "No space left on device", "/v/cache/thumbs.sqlite"))
    assert isinstance(error, VaultWriteError)
    assert "No space left on device" in str(error) and "/v/cache/thumbs.sqlite" in str(error)
    assert "OperationalError" in str(cycle_failure(__import__("sqlite3").OperationalError("x")))


def test_a_remote_a_push_missed_is_caught_up_by_an_idle_cycle(
    server: FakeMidjourney, vault_path: Path, tmp_path: Path, cli: Cli
) -> None:
    assert cli("remote", "add", "nas", str(tmp_path / "nas"), "--auto-push").code == 0
    config = tmp_path / "nas" / "config"
    saved = config.read_bytes()
    config.unlink()  # the NAS is not mounted: the push after the sync fails
    cycle = SyncCycle(
        open_vault=lambda: _opened(vault_path),
        open_client=lambda: MidjourneyClient(settings_for(server)),
        options=SyncOptions(concurrency=4, thumbnails=False),
        notifier=Recorded(),
        stop=threading.Event(),
    )
    first = cycle()
    assert first.new_jobs == JOBS and first.push_failed
    config.write_bytes(saved)  # mounted again
    idle = cycle()
    assert idle.new_jobs == 0 and idle.report is not None and idle.report.snapshot is None
    assert [p.remote for p in idle.pushes] == ["nas"] and not idle.push_failed
    assert idle.pushes[0].report is not None and idle.pushes[0].report.snapshots_sent >= 1
    assert cycle().pushes == []  # caught up: an idle cycle pushes nothing
    # A one-shot sync catches up the same way.
    config.unlink()
    server.add_jobs(1)
    assert cli("sync", *FAST).code == 4
    config.write_bytes(saved)
    again = cli("--json", "sync", *FAST)
    assert again.code == 0, again.err
    assert [p["remote"] for p in again.json()["pushes"]] == ["nas"]


def test_a_cycle_that_ends_two_problems_sends_one_recovered_message(
    server: FakeMidjourney, vault_path: Path, tmp_path: Path, cli: Cli, receiver: Receiver
) -> None:
    assert cli("remote", "add", "nas", str(tmp_path / "nas"), "--auto-push").code == 0
    config = tmp_path / "nas" / "config"
    saved = config.read_bytes()
    cycle = _notified_cycle(server, vault_path, receiver)
    config.unlink()  # the NAS is not mounted
    assert cycle().push_failed
    server.faults = Faults(expired=True)
    assert cycle().error is not None
    server.faults = Faults()
    config.write_bytes(saved)
    receiver.received.clear()
    assert cycle().error is None
    [recovered] = receiver.received
    assert "recovered" in recovered["title"].lower(), recovered
    assert "sync" in recovered["message"] and "push to nas" in recovered["message"], recovered


def test_a_follow_up_that_fails_still_clears_a_sync_failure(
    server: FakeMidjourney, vault_path: Path, receiver: Receiver
) -> None:
    def broken(_vault: Vault, _report: Any) -> None:
        raise MjvaultError("the follow-up failed")

    cycle = _notified_cycle(server, vault_path, receiver)
    server.faults = Faults(expired=True)
    assert cycle().error is not None
    server.faults = Faults()
    cycle.after_sync = broken
    receiver.received.clear()
    assert str(cycle().error) == "the follow-up failed"
    titles = [m["title"] for m in receiver.received]
    assert titles == [
        f"mjvault: {JOBS} new jobs",
        "mjvault: sync recovered",
        "mjvault: sync follow-up failed",
    ], titles


def test_a_push_failure_that_comes_back_after_a_push_by_hand_is_notified_again(
    server: FakeMidjourney, vault_path: Path, tmp_path: Path, cli: Cli, receiver: Receiver
) -> None:
    assert cli("remote", "add", "nas", str(tmp_path / "nas"), "--auto-push").code == 0
    config = tmp_path / "nas" / "config"
    saved = config.read_bytes()
    cycle = _notified_cycle(server, vault_path, receiver)
    config.unlink()  # the NAS is not mounted
    assert cycle().push_failed
    config.write_bytes(saved)
    assert cli("push", "nas").code == 0  # the user catches it up by hand
    idle = cycle()
    assert idle.pushes == [] and idle.followups.caught_up == ["nas"]
    config.unlink()  # unmounted again, weeks later
    server.add_jobs(2)
    assert cycle().push_failed
    titles = [m["title"] for m in receiver.received]
    assert sum("push" in t.lower() and "recovered" not in t.lower() for t in titles) == 2, titles
    assert sum("recovered" in t.lower() for t in titles) == 1, titles  # the push by hand


def test_one_owner_of_follow_ups_and_the_watch_reports_retention_and_packing(
    server: FakeMidjourney, vault_path: Path, tmp_path: Path
) -> None:
    import mjvault.cli.watch as cli_watch

    source = Path(cli_watch.__file__).read_text()
    assert "cli.sync import _" not in source  # no private names of the one-shot command
    log = tmp_path / "watch.log"
    process = start_watch(vault_path, server, log, root=("--json",))
    wait_until(lambda: len(cycles(log)) >= 1, process, 30, "a first cycle")
    code, out, err = stopped(process, signal.SIGTERM)
    assert code == 0, err
    first = json.loads(out.splitlines()[0])
    assert first["new_jobs"] == JOBS and "retention" in first and "packing" in first
