"""Shared fixtures: real vaults on real files, and the real CLI, in this process or a child."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import traceback
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from mjvault import Vault
from mjvault.store.crypto import KdfParams
from mjvault.testing import azurite as azurite_service
from mjvault.testing.ceph import CephCluster, ceph_unavailable
from mjvault.testing.objectstore import MotoServer

# Argon2id at its real cost takes ~0.2 s a derivation; tests use a cheap one. Production code
# never reads this: it is passed explicitly, and the CLI always uses KdfParams().
CHEAP_KDF = KdfParams(iterations=1, lanes=1, memory_cost_kib=8 * 1024)
PASSPHRASE = "correct horse battery staple"

# What an S3 client needs to reach the local moto server or Ceph gateway (credentials both
# accept, a region) and a short retry budget, so a test of a failing remote fails in seconds.
S3_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_REGION": "us-east-1",
    "MJVAULT_REMOTE_RETRY_SECONDS": "8",
}


@pytest.fixture(scope="session")
def s3_env() -> Iterator[None]:
    """:data:`S3_ENV` in the environment from the first S3 test to the end of the run. One
    session-wide owner: a module's fixture that set and then removed it would take it from
    under the session's Ceph cluster."""
    with pytest.MonkeyPatch.context() as patch:
        for key, value in S3_ENV.items():
            patch.setenv(key, value)
        yield


@pytest.fixture(scope="module")
def moto(s3_env: None) -> Iterator[MotoServer]:
    """moto's S3 server on 127.0.0.1, one per test module, with :data:`S3_ENV` set."""
    with MotoServer() as server:
        yield server


# The engines that need installing (Ceph's gateway, Azurite), and the names their test cases
# carry as parameters. Their tests are marked ``engines``: the suite leaves them out to stay
# fast, and `.ci/run` runs them in a step of their own once it has installed the engines.
ENGINE_FIXTURES = frozenset({"ceph_rgw", "azurite"})
ENGINE_PARAMS = frozenset({"ceph", "azure", "azurite"})


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        callspec = getattr(item, "callspec", None)
        values = callspec.params.values() if callspec is not None else ()
        named = {value for value in values if isinstance(value, str)}
        if ENGINE_FIXTURES & set(getattr(item, "fixturenames", ())) or ENGINE_PARAMS & named:
            item.add_marker(pytest.mark.engines)


def service_missing(reason: str) -> None:
    """Skip a test whose service is unavailable, except under .ci/run, which installs the
    services and sets MJVAULT_REQUIRE_SERVICES=1: there a missing service fails the run."""
    if os.environ.get("MJVAULT_REQUIRE_SERVICES") == "1":
        pytest.fail(f"{reason} (MJVAULT_REQUIRE_SERVICES=1)", pytrace=False)
    pytest.skip(reason)


def system_chromium() -> tuple[str, Any]:
    """Debian's chromium and Playwright's sync API (never a downloaded browser), or a skip
    saying which is missing; under .ci/run, which installs both, a missing one fails."""
    chromium = shutil.which("chromium")
    if chromium is None:
        service_missing("chromium is not installed (apt-get install chromium)")
    try:
        from playwright import sync_api
    except ImportError:
        service_missing("playwright is not installed")
    assert chromium is not None
    return chromium, sync_api


@pytest.fixture(scope="session")
def ceph_rgw(s3_env: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[CephCluster]:
    """A one-node Ceph cluster's S3 gateway on 127.0.0.1 (one for the whole run, ~20 s to
    start), its user's keys being :data:`S3_ENV`'s. Each ``spec()`` is a fresh bucket."""
    reason = ceph_unavailable()
    if reason:
        service_missing(reason)
    with CephCluster(tmp_path_factory.mktemp("ceph")) as cluster:
        yield cluster


@pytest.fixture(params=["s3", "ceph"])
def s3_server(request: pytest.FixtureRequest) -> MotoServer | CephCluster:
    """Each S3 engine the suite runs against: moto (``s3``) and Ceph's gateway (``ceph``)."""
    name = "moto" if request.param == "s3" else "ceph_rgw"
    return request.getfixturevalue(name)  # type: ignore[no-any-return]


@pytest.fixture(scope="session")
def azurite() -> Iterator[azurite_service.Azurite]:
    """Azurite's blob service on 127.0.0.1, one per run, with the well-known development
    account's credentials (:data:`mjvault.testing.azurite.ENV`) and a short retry budget set."""
    reason = azurite_service.missing()
    if reason:
        service_missing(reason)
    with pytest.MonkeyPatch.context() as patch:
        for key, value in {**azurite_service.ENV, "MJVAULT_REMOTE_RETRY_SECONDS": "8"}.items():
            patch.setenv(key, value)
        with azurite_service.Azurite() as server:
            yield server


@pytest.fixture
def vault(tmp_path: Path) -> Iterator[Vault]:
    v = Vault.init(tmp_path / "vault")
    yield v
    v.close()


@pytest.fixture
def encrypted_vault(tmp_path: Path) -> Iterator[Vault]:
    v = Vault.init(tmp_path / "vault", encrypt=True, passphrase=PASSPHRASE, kdf=CHEAP_KDF)
    yield v
    v.close()


def record_json(job_id: str, prompt: str = "a red fox", **extra: object) -> bytes:
    record = {
        "id": job_id,
        "enqueue_time": "2023-05-26 07:38:42.209596",
        "type": "grid",
        "full_command": f"{prompt} --ar 16:9 --v 6",
        "prompt": prompt,
        "batch_size": 4,
    } | extra
    return json.dumps(record, indent=2).encode("utf-8")


def png_bytes(seed: int, size: int = 256) -> bytes:
    """Bytes that look like a PNG to magic-number sniffing (content is not decoded here)."""
    body = seed.to_bytes(8, "big") * (size // 8 + 1)
    return b"\x89PNG\r\n\x1a\n" + body[:size]


class CliResult(subprocess.CompletedProcess[bytes]):
    """What a parent sees of one `mjvault` run: ``args``, ``returncode``, and ``stdout`` and
    ``stderr`` as bytes, whether the run was in this process or a child's."""


@dataclass
class Result:
    """A run's exit code and its output as text."""

    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)

    @classmethod
    def of(cls, ran: subprocess.CompletedProcess[bytes]) -> Result:
        return cls(
            ran.returncode,
            ran.stdout.decode("utf-8"),
            ran.stderr.decode("utf-8", errors="backslashreplace"),
        )


def _clean_env(env: dict[str, str] | None) -> dict[str, str]:
    # A developer's own MJVAULT_* settings must not reach a test's run.
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("MJVAULT_")}
    full_env.update(env or {})
    return full_env


def run_cli_process(
    *args: str,
    env: dict[str, str] | None = None,
    input: bytes | None = None,
    cwd: Path | None = None,
) -> subprocess.CompletedProcess[bytes]:
    """The real `mjvault` command in a child process, for tests where the process is the
    point: signals, kills, terminals, closed pipes, start-up, `python -m mjvault` itself."""
    return subprocess.run(
        [sys.executable, "-m", "mjvault", *args],
        capture_output=True,
        env=_clean_env(env),
        input=input,
        cwd=cwd,
        timeout=120,
    )


def run_cli(
    *args: str,
    env: dict[str, str] | None = None,
    input: bytes | None = None,
    cwd: Path | None = None,
) -> subprocess.CompletedProcess[bytes]:
    """The `mjvault` command run in this process as a child would run it: the same
    environment rules as :func:`run_cli_process` (inherited MJVAULT_* removed, ``env`` on
    top), ``input`` as stdin, and output and exit code as a parent sees them. In process, so
    the suite does not pay a Python start-up per run and coverage counts the command."""
    return invoke_cli(list(args), env=_clean_env(env), input=input, cwd=cwd, keyring_from_env=True)


# Signals a command may take over; each run gives them back as it found them.
_SIGNALS = tuple(
    getattr(signal, name)
    for name in ("SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT", "SIGPIPE", "SIGUSR1", "SIGUSR2")
    if hasattr(signal, name)
)


def invoke_cli(
    args: list[str],
    *,
    env: dict[str, str] | None = None,
    input: bytes | None = None,
    cwd: Path | None = None,
    keyring_from_env: bool = False,
) -> CliResult:
    """Run `mjvault args` in this process and give back what a parent would see.

    ``env`` replaces the whole environment for the run (None keeps it). A process lives once,
    this one runs many commands: everything a command may change for the rest of a process
    (environment, working folder, umask, ``sys.argv``, signal handlers, logging handlers,
    the keyring backend, masked secrets, warnings given once, what the file system was found
    to support) is put back as it was after the run. The command sees the ``sys.argv`` of
    ``python -m mjvault``, and Python warnings go to its stderr with Python's default filters.
    ``keyring_from_env``: pick the keyring backend as a new process does, from
    PYTHON_KEYRING_BACKEND or by detection (by default the backend a test has installed in
    this process is kept for the run); either way the one found is back after the run.
    """
    import mjvault
    from mjvault import redact
    from mjvault.cli.main import main
    from mjvault.views import links

    saved_environ = dict(os.environ)
    saved_cwd = os.getcwd()
    saved_umask = os.umask(0o022)
    os.umask(saved_umask)
    saved_signals = {signum: signal.getsignal(signum) for signum in _SIGNALS}
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    saved_argv = sys.argv[:]
    saved_link_flags = links._tmpfile_works, links._empty_path_works
    httpx_level = logging.getLogger("httpx").level
    saved_secrets = set(redact._known)
    saved_streams = sys.stdin, sys.stdout, sys.stderr
    keyring_core = sys.modules.get("keyring.core")
    saved_keyring = getattr(keyring_core, "_keyring_backend", None)
    out, err = io.BytesIO(), io.BytesIO()
    # As Python sets them up for pipes: UTF-8, stderr never failing on an odd character.
    stdout = io.TextIOWrapper(out, encoding="utf-8")
    stderr = io.TextIOWrapper(err, encoding="utf-8", errors="backslashreplace")
    stdin = io.TextIOWrapper(io.BytesIO(input or b""), encoding="utf-8")
    code: int = 0
    try:
        if env is not None:
            os.environ.clear()
            os.environ.update(env)
        if cwd is not None:
            os.chdir(cwd)
        _fresh_process_state(keyring_from_env)
        # Detached for the run: the command's logging set-up closes the handlers it finds,
        # and pytest's own (--log-file, capture) must outlive it.
        for found in saved_handlers:
            root.removeHandler(found)
        sys.argv = [str(Path(mjvault.__file__).with_name("__main__.py")), *args]
        sys.stdin, sys.stdout, sys.stderr = stdin, stdout, stderr
        try:
            with warnings.catch_warnings():
                # A child starts with Python's default filters and prints warnings on stderr.
                warnings.resetwarnings()
                for action, category, module in _DEFAULT_WARNING_FILTERS:
                    warnings.filterwarnings(action, category=category, module=module)  # type: ignore[arg-type]
                warnings.showwarning = _show_warning_on_stderr
                main(list(args))
        except SystemExit as exc:
            if exc.code is None:
                code = 0
            elif isinstance(exc.code, int):
                code = exc.code
            else:  # sys.exit("message"): Python prints it and exits 1
                print(exc.code, file=sys.stderr)
                code = 1
        except KeyboardInterrupt:
            traceback.print_exc()
            code = -signal.SIGINT
        except Exception:  # noqa: BLE001 - a child would print the traceback and exit 1
            traceback.print_exc()
            code = 1
    finally:
        for stream in (stdout, stderr):
            with contextlib.suppress(ValueError, OSError):
                stream.flush()
        sys.stdin, sys.stdout, sys.stderr = saved_streams
        sys.argv = saved_argv
        links._tmpfile_works, links._empty_path_works = saved_link_flags
        os.environ.clear()
        os.environ.update(saved_environ)
        os.chdir(saved_cwd)
        os.umask(saved_umask)
        for signum, handler in saved_signals.items():
            if handler is not None:
                signal.signal(signum, handler)
        for handler in root.handlers[:]:
            if handler not in saved_handlers:
                root.removeHandler(handler)
                handler.close()
        for handler in saved_handlers:
            if handler not in root.handlers:
                root.addHandler(handler)
        root.setLevel(saved_level)
        logging.getLogger("httpx").setLevel(httpx_level)
        redact.forget_secrets()
        for value in saved_secrets:
            redact.register_secret(value)
        keyring_core = sys.modules.get("keyring.core")
        if keyring_core is not None:
            keyring_core._keyring_backend = saved_keyring  # type: ignore[attr-defined]
    return CliResult(["mjvault", *args], code, out.getvalue(), err.getvalue())


def _fresh_process_state(keyring_from_env: bool) -> None:
    """What a new process starts with and a run in this one may have changed."""
    loader = sys.modules.get("mjvault.config.loader")
    if loader is not None:
        loader._warned.clear()  # type: ignore[attr-defined]  # warned once per process
    if keyring_from_env:
        import keyring.core

        # The backend is chosen once per process: from this variable when it is set, else
        # detected on first use (None makes keyring detect it again).
        if os.environ.get("PYTHON_KEYRING_BACKEND"):
            keyring.core.set_keyring(keyring.core.load_env())  # type: ignore[arg-type]
        else:
            keyring.core._keyring_backend = None


# Python's filters when no -W option or PYTHONWARNINGS is given (a release build): the
# innermost added last, so these go in the reverse of `warnings.filters`' order.
_DEFAULT_WARNING_FILTERS: tuple[tuple[str, type[Warning], str], ...] = (
    ("ignore", ResourceWarning, ""),
    ("ignore", ImportWarning, ""),
    ("ignore", PendingDeprecationWarning, ""),
    ("ignore", DeprecationWarning, ""),
    ("default", DeprecationWarning, "__main__"),
)


def _show_warning_on_stderr(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: Any = None,
    line: str | None = None,
) -> None:
    """Print a warning as Python does, on the stderr the run substituted."""
    sys.stderr.write(warnings.formatwarning(message, category, filename, lineno, line))
