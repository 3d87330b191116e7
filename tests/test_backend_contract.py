"""The contract of :class:`~mjvault.remotes.backend.Backend`, one suite for every storage kind.

Every test runs unchanged on a folder, moto's S3 server, Ceph RGW and Azurite: whatever push,
pull, clone and verify rely on is stated here once, and a kind that breaks it fails here
rather than in a user's archive. Services come from their fixtures (``spec(name)`` makes a
fresh empty bucket or container); a kind whose fixture this checkout lacks is skipped.

HTTP faults (5xx, slow answers, a server that dies mid-request) come from a
:class:`~mjvault.testing.objectstore.FaultProxy` put in front of the service.
"""

from __future__ import annotations

import base64
import os
import re
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypeVar

import pytest

from mjvault.remotes.backend import (
    STREAM_CHUNK,
    Backend,
    RemoteAuthError,
    RemoteError,
    RemoteNotFound,
)
from mjvault.remotes.config import RemoteSpec, normalise_url, open_backend
from mjvault.testing.objectstore import FaultProxy, MotoServer, moto_executable

T = TypeVar("T")

#: The fixture that gives each service kind, by kind.
SERVICE_FIXTURES = {"moto": "moto", "ceph": "ceph_rgw", "azure": "azurite"}
KINDS = ["folder", *SERVICE_FIXTURES]
#: Environment variables a service's secret may sit in (obstore reads these).
SECRET_VARIABLES = (
    "AWS_SECRET_ACCESS_KEY",
    "AZURE_STORAGE_ACCOUNT_KEY",
    "AZURE_STORAGE_ACCESS_KEY",
    "AZURE_STORAGE_MASTER_KEY",
)
# Well-formed for every kind (Azure keys are 64 bytes in base64), and the wrong one.
WRONG_SECRET = base64.b64encode(
    b"not the key, but shaped like one: sixty-four bytes long........."
).decode()
#: How long a request to a dead server may take to fail with a 1 s retry budget (connect and
#: backoff included); a hang is caught by the watchdog in :func:`within`.
DEAD_SERVER_SECONDS = 30.0


@dataclass
class Place:
    """One storage kind, as the contract sees it: fresh remotes on it, and ways to break it."""

    kind: str
    service: Any | None  # None for a folder
    tmp: Path

    @property
    def http(self) -> bool:
        return self.service is not None

    def spec(self, name: str = "contract", **options: object) -> RemoteSpec:
        if self.service is None:
            root = self.tmp / f"{name}-{len(list(self.tmp.iterdir()))}"
            return RemoteSpec(name, normalise_url(str(root)))
        return self.service.spec(name, **options)  # type: ignore[no-any-return]

    def backend(self, spec: RemoteSpec | None = None) -> Backend:
        return open_backend(spec or self.spec())

    def need_http(self, what: str) -> None:
        if not self.http:
            pytest.skip(f"a folder has no {what}")

    @contextmanager
    def proxied(self) -> Iterator[tuple[FaultProxy, Backend]]:
        """A fresh remote reached through a FaultProxy, and the proxy."""
        self.need_http("server to break")
        spec = self.spec()
        assert spec.endpoint_url, "a service's spec names its endpoint"
        with FaultProxy(spec.endpoint_url) as proxy:
            backend = open_backend(
                replace(spec, endpoint_url=proxy.endpoint_for(spec.endpoint_url))
            )
            try:
                yield proxy, backend
            finally:
                backend.close()


@pytest.fixture(params=KINDS)
def place(request: pytest.FixtureRequest, tmp_path: Path) -> Place:
    kind = request.param
    if kind == "folder":
        return Place(kind, None, tmp_path)
    if kind == "moto" and moto_executable() is None:
        pytest.skip("moto[server] not installed")
    try:
        service = request.getfixturevalue(SERVICE_FIXTURES[kind])
    except pytest.FixtureLookupError:
        pytest.skip(f"{kind}: fixture not available")
    return Place(kind, service, tmp_path)


@pytest.fixture
def backend(place: Place) -> Iterator[Backend]:
    b = place.backend()
    yield b
    b.close()


def within(seconds: float, work: Callable[[], T]) -> T:
    """``work()``'s result or exception, failing the test if it takes longer than ``seconds``
    (the call is left running on a daemon thread rather than hanging the suite)."""
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["value"] = work()
        except BaseException as exc:  # handed to the caller below
            box["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        pytest.fail(f"still waiting after {seconds:.0f} s: a hang, not an error")
    if "error" in box:
        raise box["error"]
    return box["value"]  # type: ignore[no-any-return]


def blob(size: int, seed: int = 1) -> bytes:
    return bytes((seed * 31 + i * 7 + i // 251) % 256 for i in range(size))


# -- writes ------------------------------------------------------------------------------------
def test_create_only_put_leaves_an_existing_key_as_it_is(backend: Backend) -> None:
    assert backend.put("objects/ab/first", b"one", create_only=True) is True
    assert backend.put("objects/ab/first", b"two", create_only=True) is False
    assert backend.get("objects/ab/first") == b"one"


def test_create_only_racers_have_exactly_one_winner(backend: Backend) -> None:
    racers = 8
    start = threading.Barrier(racers)

    def race(n: int) -> bool:
        start.wait()
        return backend.put("config", f"racer {n}".encode(), create_only=True)

    with ThreadPoolExecutor(racers) as pool:
        won = list(pool.map(race, range(racers)))
    assert won.count(True) == 1, won
    assert backend.get("config") == f"racer {won.index(True)}".encode()


def test_put_overwrites_and_an_empty_blob_is_a_blob(backend: Backend) -> None:
    assert backend.put("config", b"old") is True
    assert backend.put("config", b"new, and longer") is True
    assert backend.get("config") == b"new, and longer"
    backend.put("snapshots/empty", b"")
    assert backend.exists("snapshots/empty") and backend.get("snapshots/empty") == b""


# -- reads -------------------------------------------------------------------------------------
def test_every_read_of_an_absent_key_is_remote_not_found(backend: Backend, tmp_path: Path) -> None:
    backend.put("objects/ab/present", b"x")
    reads: list[Callable[[], object]] = [
        lambda: backend.get("objects/ab/absent"),
        lambda: backend.get_range("objects/ab/absent", 0, 10),
        lambda: backend.get_tail("objects/ab/absent", 10),
        lambda: backend.download("objects/ab/absent", (tmp_path / "out").open("wb")),
        lambda: backend.get("nowhere/at/all"),
    ]
    for read in reads:
        with pytest.raises(RemoteNotFound) as caught:
            read()
        assert "\n" not in str(caught.value)
    assert not backend.exists("objects/ab/absent") and backend.exists("objects/ab/present")


# Ranges as Python slices them: past the end is cut short, an empty or backwards range is b"".
RANGES = [(0, 0), (0, 1), (10, 20), (0, 1000), (990, 2000), (999, 1000), (1000, 1010)]
RANGES += [(2000, 3000), (5, 3), (500, 500)]
TAILS = [0, 1, 10, 999, 1000, 5000]


def test_ranges_and_tails_behave_as_slices(backend: Backend) -> None:
    data = blob(1000)
    backend.put("packs/aa/pack", data)
    for start, end in RANGES:
        assert backend.get_range("packs/aa/pack", start, end) == data[start:end], (start, end)
    for length in TAILS:
        expected = data[-length:] if length else b""
        assert backend.get_tail("packs/aa/pack", length) == (expected, 1000), length


def test_ranges_and_tails_of_an_empty_blob(backend: Backend) -> None:
    backend.put("packs/aa/empty", b"")
    assert backend.get_range("packs/aa/empty", 0, 10) == b""
    assert backend.get_tail("packs/aa/empty", 10) == (b"", 0)
    assert backend.get_tail("packs/aa/empty", 0) == (b"", 0)


def test_download_streams_a_blob_into_a_file(backend: Backend, tmp_path: Path) -> None:
    data = blob(STREAM_CHUNK * 5 + 123, seed=3)
    backend.put("packs/bb/big", data)
    out = tmp_path / "big"
    with out.open("wb") as handle:
        assert backend.download("packs/bb/big", handle) == len(data)
    assert out.read_bytes() == data
    backend.put("packs/bb/empty", b"")
    with (tmp_path / "empty").open("wb") as handle:
        assert backend.download("packs/bb/empty", handle) == 0


# -- listing and deleting ----------------------------------------------------------------------
KEYS = [
    "config",
    "keys/k1",
    "objects/ab/ab01",
    "objects/ab/ab02",
    "objects/ab/ac03",
    "objects/abc/abc04",
    "objects/cd/cd05",
    "snapshots/s1",
]


def test_list_by_prefix(backend: Backend) -> None:
    for key in KEYS:
        backend.put(key, key.encode())
    assert sorted(backend.list("")) == sorted(KEYS)
    assert sorted(backend.list("objects/ab/")) == [
        "objects/ab/ab01",
        "objects/ab/ab02",
        "objects/ab/ac03",
    ]
    # A prefix is a prefix of the key, not a directory: it may end inside a name.
    assert sorted(backend.list("objects/ab/ab")) == ["objects/ab/ab01", "objects/ab/ab02"]
    assert sorted(backend.list("objects/ab")) == [k for k in KEYS if k.startswith("objects/ab")]
    assert sorted(backend.list("objects/")) == [k for k in KEYS if k.startswith("objects/")]
    assert sorted(backend.list("snap")) == ["snapshots/s1"]
    assert list(backend.list("objects/zz/")) == [] and list(backend.list("nothing")) == []


def test_list_of_an_empty_remote_is_empty(backend: Backend) -> None:
    assert list(backend.list("")) == [] and list(backend.list("objects/")) == []


def test_list_reads_every_page(place: Place, backend: Backend) -> None:
    place.need_http("pages (it lists by walking directories)")
    # S3 answers at most 1000 keys a page; 1100 keys take two pages and a continuation token.
    keys = [f"objects/{n % 7:02x}/{n:06d}" for n in range(1100)]
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda k: backend.put(k, b""), keys))
    listed = list(backend.list("objects/"))
    assert len(listed) == len(keys) and sorted(listed) == sorted(keys)
    assert sorted(backend.list("objects/03/")) == sorted(k for k in keys if "/03/" in k)


def test_delete_removes_and_an_absent_key_is_not_an_error(backend: Backend) -> None:
    backend.put("objects/ab/gone", b"x")
    backend.put("objects/ab/kept", b"y")
    backend.delete("objects/ab/gone")
    backend.delete("objects/ab/gone")
    backend.delete("objects/ab/never")
    assert not backend.exists("objects/ab/gone")
    assert list(backend.list("objects/")) == ["objects/ab/kept"]
    with pytest.raises(RemoteNotFound):
        backend.get("objects/ab/gone")
    # A deleted key can be created again, create-only.
    assert backend.put("objects/ab/gone", b"z", create_only=True) is True


def test_a_directory_is_not_a_key(backend: Backend) -> None:
    # Object stores have keys only; a folder must not answer for the directories between them.
    backend.put("objects/ab/ab01", b"x")
    for directory in ("objects", "objects/ab", "objects/ab/"):
        assert not backend.exists(directory), directory
        with pytest.raises(RemoteNotFound):
            backend.get(directory)
        backend.delete(directory)
    assert backend.get("objects/ab/ab01") == b"x"


# -- errors ------------------------------------------------------------------------------------
@contextmanager
def strict_service(place: Place) -> Iterator[Any]:
    """The place's service with credentials checked (moto checks none unless told to)."""
    if place.kind != "moto":
        yield place.service
        return
    # The first request (creating the bucket) is let through; every later one is checked.
    with MotoServer(env={"INITIAL_NO_AUTH_ACTION_COUNT": "1"}) as strict:
        yield strict


def test_wrong_credentials_are_one_line_without_the_secret(
    place: Place, monkeypatch: pytest.MonkeyPatch
) -> None:
    place.need_http("credentials")
    monkeypatch.setenv("MJVAULT_REMOTE_RETRY_SECONDS", "1")
    with strict_service(place) as service:
        spec = service.spec("contract")
        real = [os.environ[v] for v in SECRET_VARIABLES if os.environ.get(v)]
        spoiled = [v for v in SECRET_VARIABLES if os.environ.get(v)] or [
            # An emulator's well-known key may be implied rather than set: give a wrong one.
            "AZURE_STORAGE_ACCOUNT_KEY" if place.kind == "azure" else "AWS_SECRET_ACCESS_KEY"
        ]
        for variable in spoiled:
            monkeypatch.setenv(variable, WRONG_SECRET)
        wrong = open_backend(spec)
        for attempt in (
            lambda: wrong.get("config"),
            lambda: wrong.put("config", b"x"),
            lambda: list(wrong.list("")),
        ):
            with pytest.raises(RemoteAuthError) as caught:
                within(DEAD_SERVER_SECONDS, attempt)
            message = str(caught.value)
            assert "\n" not in message and "credentials" in message
            assert WRONG_SECRET not in message and not any(s in message for s in real)


def test_a_missing_bucket_is_one_line_naming_it(
    place: Place, monkeypatch: pytest.MonkeyPatch
) -> None:
    place.need_http("bucket")
    monkeypatch.setenv("MJVAULT_REMOTE_RETRY_SECONDS", "1")
    spec = place.spec()
    container = "nosuch-" + os.urandom(4).hex()
    scheme, _, rest = spec.url.partition("://")
    missing = open_backend(replace(spec, url=f"{scheme}://{container}/{rest.partition('/')[2]}"))
    for attempt in (
        lambda: missing.get("config"),
        lambda: missing.put("config", b"x"),
        lambda: list(missing.list("")),
    ):
        with pytest.raises(RemoteError) as caught:
            within(DEAD_SERVER_SECONDS, attempt)
        # Not RemoteNotFound: a missing bucket must not pass for an empty remote to set up.
        assert not isinstance(caught.value, RemoteNotFound)
        message = str(caught.value)
        assert "\n" not in message and re.search(rf"\b{container}\b", message)


def test_5xx_answers_are_retried(place: Place) -> None:
    with place.proxied() as (proxy, backend):
        proxy.fail_every = 2
        backend.put("objects/ab/a", b"payload")
        assert backend.put("objects/ab/a", b"other", create_only=True) is False
        assert backend.get("objects/ab/a") == b"payload"
        assert backend.get_range("objects/ab/a", 1, 4) == b"ayl"
        assert backend.exists("objects/ab/a") and list(backend.list("objects/")) == ["objects/ab/a"]
        backend.delete("objects/ab/a")
        assert proxy.failures >= 4


def test_slow_answers_still_succeed(place: Place) -> None:
    with place.proxied() as (proxy, backend):
        proxy.delay = 0.5
        backend.put("objects/ab/slow", b"s" * 1000)
        assert backend.get("objects/ab/slow") == b"s" * 1000
        assert list(backend.list("objects/")) == ["objects/ab/slow"]


def test_a_transfer_broken_mid_body_is_read_again_not_cut_short(
    place: Place, tmp_path: Path
) -> None:
    data = blob(STREAM_CHUNK * 4 + 17, seed=5)
    with place.proxied() as (proxy, backend):
        backend.put("packs/cc/pack", data)
        proxy.cut_every = 2
        for _ in range(2):  # the cut falls on either of two reads in a row
            assert backend.get("packs/cc/pack") == data
            assert backend.get_range("packs/cc/pack", 100, 200_000) == data[100:200_000]
            assert backend.get_tail("packs/cc/pack", 70_000) == (data[-70_000:], len(data))
            with (tmp_path / "out").open("wb") as out:
                assert backend.download("packs/cc/pack", out) == len(data)
            assert (tmp_path / "out").read_bytes() == data
        assert proxy.cuts >= 4
        # A listing's pages are bodies too: one cut mid-way is read again from where it broke.
        keys = [f"objects/{n % 5:02x}/{n:06d}" for n in range(1100)]
        proxy.cut_every = 0
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda k: backend.put(k, b""), keys))
        proxy.cut_every = 2
        cuts = proxy.cuts
        for _ in range(3):
            assert sorted(backend.list("objects/")) == sorted(keys)
        assert proxy.cuts >= cuts + 3


@pytest.mark.parametrize("how", ["dead_after", "stop"])
def test_a_server_gone_mid_request_is_an_error_in_bounded_time(
    place: Place, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    monkeypatch.setenv("MJVAULT_REMOTE_RETRY_SECONDS", "1")
    with place.proxied() as (proxy, backend):
        backend.put("objects/ab/a", b"payload")
        if how == "dead_after":
            proxy.dead_after = proxy.requests  # every further request dies unanswered
        else:
            proxy.delay = 1.0  # the request is in the proxy when the server goes
            threading.Timer(0.3, proxy.stop).start()
        started = time.monotonic()
        with pytest.raises(RemoteError) as caught:
            within(DEAD_SERVER_SECONDS, lambda: backend.get("objects/ab/a"))
        assert "\n" not in str(caught.value) and not isinstance(caught.value, RemoteNotFound)
        assert time.monotonic() - started < DEAD_SERVER_SECONDS
        for attempt in (
            lambda: backend.put("objects/ab/b", b"x"),
            lambda: list(backend.list("objects/")),
            lambda: backend.exists("objects/ab/a"),
        ):
            with pytest.raises(RemoteError):
                within(DEAD_SERVER_SECONDS, attempt)
        assert proxy.dropped > 0


def test_a_dead_server_is_not_a_credentials_error_whatever_the_key_holds(
    place: Place, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A request that never got an answer names its URL, and an object's hex name may hold
    # "403": that is no refusal of the credentials.
    monkeypatch.setenv("MJVAULT_REMOTE_RETRY_SECONDS", "1")
    key = "objects/40/403f403a"
    with place.proxied() as (proxy, backend):
        backend.put(key, b"payload")
        proxy.dead_after = proxy.requests
        with pytest.raises(RemoteError) as caught:
            within(DEAD_SERVER_SECONDS, lambda: backend.get(key))
        assert not isinstance(caught.value, RemoteAuthError | RemoteNotFound), caught.value
