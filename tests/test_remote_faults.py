"""Push, pull, clone and ``verify --remote`` through planned storage faults.

Real storage (a folder, moto's S3 server) with :class:`~mjvault.testing.faulty.FaultyBackend`
between it and the commands: every planned fault must fire, or the test fails (the ``faults``
fixture checks). What is asserted is what a user relies on: a failed run leaves nothing
half-published, a rerun finishes, damaged bytes are never stored, errors are one line.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from mjvault import Vault
from mjvault.integrity.verify import verify
from mjvault.remotes.backend import Backend, RemoteError
from mjvault.remotes.clone import clone
from mjvault.remotes.config import RemoteSpec, normalise_url, open_backend, save_spec
from mjvault.remotes.pull import pull
from mjvault.remotes.push import PushReport, push
from mjvault.remotes.remote import CONFIG_KEY, RemoteInfo
from mjvault.remotes.session import connect
from mjvault.remotes.verify import verify_named_remote, verify_remote
from mjvault.testing.faulty import FaultPlan, FaultyBackend, faults_on_remotes
from mjvault.testing.objectstore import FaultProxy, moto_executable
from tests.conftest import invoke_cli, png_bytes, record_json

OBJECTS = "objects/"


@pytest.fixture(params=["folder", "moto"])
def spec(request: pytest.FixtureRequest, tmp_path: Path) -> RemoteSpec:
    if request.param == "folder":
        return RemoteSpec("offsite", normalise_url(str(tmp_path / "remote")))
    if moto_executable() is None:
        pytest.skip("moto[server] not installed")
    return request.getfixturevalue("moto").spec("offsite")  # type: ignore[no-any-return]


@pytest.fixture
def folder(tmp_path: Path) -> RemoteSpec:
    return RemoteSpec("offsite", normalise_url(str(tmp_path / "remote")))


@pytest.fixture
def faults() -> Iterator[FaultPlan]:
    """Faults around every remote the commands open; at the end each must have fired."""
    with faults_on_remotes() as plan:
        yield plan


def add_jobs(vault: Vault, count: int, start: int = 0) -> None:
    with vault.writer("test") as writer:
        for n in range(start, start + count):
            image = writer.put_media(png_bytes(n, 2048))
            writer.add_job(record_json(f"job-{n}", f"prompt {n} fox"), [image, None])


def make_vault(path: Path, jobs: int) -> Vault:
    vault = Vault.init(path)
    add_jobs(vault, jobs)
    return vault


def push_to(vault: Vault, spec: RemoteSpec) -> PushReport:
    with connect(vault, spec, create=True) as link:
        return push(vault, link)


def remote_verifies(vault: Vault, spec: RemoteSpec) -> bool:
    with connect(vault, spec) as link:
        return verify_remote(link, read_data=True).ok


def local_files(vault: Vault) -> dict[str, int]:
    """The vault's own files and their sizes, leaving out per-remote state (scratch tables)."""
    found = {}
    for path in vault.path.rglob("*"):
        rel = path.relative_to(vault.path).as_posix()
        if path.is_file() and not rel.startswith("remotes/"):
            found[rel] = path.stat().st_size
    return found


# -- push --------------------------------------------------------------------------------------
@pytest.mark.parametrize("action", ["error", "error_after"])
def test_a_put_failing_mid_push_publishes_nothing_and_a_rerun_finishes(
    spec: RemoteSpec, tmp_path: Path, faults: FaultPlan, action: str
) -> None:
    source = make_vault(tmp_path / "src", 30)
    # The 11th image upload fails (error_after: it arrived, but push hears it failed).
    fault = faults.plan("put", action, key=OBJECTS, after=10)  # type: ignore[arg-type]
    with pytest.raises(RemoteError, match="planned fault"):
        push_to(source, spec)
    direct = open_backend(spec)
    assert not list(direct.list("snapshots/")), "a snapshot whose objects did not all arrive"
    assert len(list(direct.list(OBJECTS))) >= 10
    # "error": the upload never happened; "error_after": it did, and push was told otherwise.
    assert direct.exists(fault.fired_on[0]) == (action == "error_after")
    report = push_to(source, spec)
    assert report.ok and report.snapshots_sent == 1
    assert report.objects_skipped >= 10
    assert remote_verifies(source, spec)
    source.close()


def test_a_failed_snapshot_publish_is_finished_by_a_rerun(
    folder: RemoteSpec, tmp_path: Path, faults: FaultPlan
) -> None:
    source = make_vault(tmp_path / "src", 5)
    faults.plan("put", "error", key="snapshots/")
    with pytest.raises(RemoteError):
        push_to(source, folder)
    assert not list(open_backend(folder).list("snapshots/"))
    report = push_to(source, folder)
    assert report.ok and report.snapshots_sent == 1 and report.objects_sent == 0
    assert remote_verifies(source, folder)
    source.close()


def test_a_snapshot_another_machine_published_first_counts_as_present(
    folder: RemoteSpec, tmp_path: Path, faults: FaultPlan
) -> None:
    source = make_vault(tmp_path / "src", 5)
    faults.plan("put", "lose_race", key="snapshots/")
    report = push_to(source, folder)
    assert report.ok and report.snapshots_sent == 0 and report.snapshots_present == 1
    assert remote_verifies(source, folder)
    source.close()


def test_two_machines_setting_up_one_remote_share_the_winners_config(
    folder: RemoteSpec, tmp_path: Path, faults: FaultPlan
) -> None:
    other = json.dumps(RemoteInfo.new(None, "plain").to_json(), indent=2).encode()
    faults.plan("put", "lose_race", key=CONFIG_KEY, data=other)
    source = make_vault(tmp_path / "src", 3)
    with connect(source, folder, create=True) as link:
        assert link.info.id == json.loads(other)["id"]
        assert push(source, link).ok
    assert open_backend(folder).get(CONFIG_KEY) == other
    source.close()


def test_a_failing_listing_stops_push_in_one_line_and_sends_nothing(
    folder: RemoteSpec, tmp_path: Path, faults: FaultPlan
) -> None:
    source = make_vault(tmp_path / "src", 5)
    with connect(source, folder, create=True):
        pass  # the remote is set up; the push below lists it
    faults.plan("list", "error", key=OBJECTS)
    with pytest.raises(RemoteError) as caught:
        push_to(source, folder)
    assert "\n" not in str(caught.value)
    assert not list(open_backend(folder).list(OBJECTS))
    source.close()


def test_slow_storage_only_slows_a_push(
    folder: RemoteSpec, tmp_path: Path, faults: FaultPlan
) -> None:
    source = make_vault(tmp_path / "src", 5)
    faults.plan("put", "delay", key=OBJECTS, seconds=0.05, times=5)
    faults.plan("list", "delay", seconds=0.2)
    assert push_to(source, folder).ok
    assert remote_verifies(source, folder)
    source.close()


# -- pull and clone ----------------------------------------------------------------------------
def pushed(tmp_path: Path, spec: RemoteSpec, jobs: int = 12) -> Vault:
    """A vault with ``jobs`` jobs pushed to ``spec`` (before any fault is planned)."""
    source = make_vault(tmp_path / "src", jobs)
    assert push_to(source, spec).ok
    return source


@pytest.mark.parametrize("action", ["corrupt", "truncate"])
def test_damaged_bytes_on_pull_are_caught_and_never_stored(
    spec: RemoteSpec, tmp_path: Path, faults: FaultPlan, action: str
) -> None:
    source = pushed(tmp_path, spec)
    target = Vault.init(tmp_path / "dst")
    save_spec(target.path, spec)
    fault = faults.plan("get", action, key=OBJECTS)  # type: ignore[arg-type]
    with connect(target, spec) as link:
        report = pull(target, link)
    damaged = fault.fired_on[0].rpartition("/")[2]
    assert not report.ok and any(damaged[:12] in p for p in report.problems)
    assert not target.store.exists(damaged)
    # The snapshot needs that image: it is not taken until every part of it is sound.
    assert target.head() is None and report.snapshots_received == 0
    with connect(target, spec) as link:
        again = pull(target, link)
    assert again.ok and target.head() == source.head()
    assert target.read_object(damaged) == source.read_object(damaged)
    target.close()
    source.close()


@pytest.mark.parametrize("method", ["download", "get_tail"])
def test_a_damaged_pack_read_on_clone_is_caught_and_a_rerun_finishes(
    folder: RemoteSpec, tmp_path: Path, faults: FaultPlan, method: str
) -> None:
    source = pushed(tmp_path, folder)
    # Records and tree nodes travel in packs: a pack's trailer is read from its end, then the
    # pack downloaded whole. Either read coming back damaged must keep its objects out.
    at = -8 if method == "get_tail" else None  # in the trailer: its checksum must catch it
    fault = faults.plan(method, "corrupt", key="packs/", offset=at)  # type: ignore[arg-type]
    copy, report = clone(folder, tmp_path / "copy")
    # A damaged pack's entries are not taken (download), or the pack is not known at all
    # (trailer): either way the tree is incomplete, and no snapshot is taken from it.
    assert not report.ok and copy.head() is None
    assert any("not pulled" in p for p in report.problems)
    assert verify(copy, read_data=True).ok
    copy.close()
    assert fault.fired == 1
    copy, report = clone(folder, tmp_path / "copy")
    assert report.ok and copy.head() == source.head()
    copy.close()
    source.close()


def test_a_failing_listing_stops_pull_in_one_line_and_changes_nothing_local(
    folder: RemoteSpec, tmp_path: Path, faults: FaultPlan
) -> None:
    pushed(tmp_path, folder).close()
    target = make_vault(tmp_path / "dst", 2)
    save_spec(target.path, folder)
    before = local_files(target), target.head()
    target.close()
    faults.plan("list", "error", key="snapshots/")
    pulled = invoke_cli(["--vault", str(tmp_path / "dst"), "pull", "offsite"])
    assert pulled.returncode != 0
    err = pulled.stderr.decode().strip()
    assert err.count("\n") == 0 and "planned fault" in err, err
    target = Vault.open(tmp_path / "dst")
    assert (local_files(target), target.head()) == before
    target.close()


def test_a_listing_cut_short_on_pull_takes_only_whole_snapshots(
    folder: RemoteSpec, tmp_path: Path, faults: FaultPlan
) -> None:
    # A listing that misses keys (an eventually consistent store): what is taken is sound.
    source = pushed(tmp_path, folder)
    add_jobs(source, 4, start=100)
    assert push_to(source, folder).ok
    faults.plan("list", "truncate", key="snapshots/")
    copy, report = clone(folder, tmp_path / "copy")
    assert report.snapshots_received == 1 and verify(copy, read_data=True).ok
    copy.close()
    copy, report = clone(folder, tmp_path / "copy")
    assert report.ok and copy.head() == source.head()
    copy.close()
    source.close()


def test_faults_on_the_wire_are_retried_through_whole_commands(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    # 5xx answers and bodies cut mid-way are the store client's to retry: push, clone and
    # verify --read-data all finish through them, and nothing damaged is kept.
    if moto_executable() is None:
        pytest.skip("moto[server] not installed")
    moto = request.getfixturevalue("moto")
    with FaultProxy(moto.port) as proxy:
        spec = moto.spec("offsite", endpoint_url=proxy.endpoint)
        proxy.fail_every, proxy.cut_every = 3, 4
        source = pushed(tmp_path, spec, jobs=20)
        copy, report = clone(spec, tmp_path / "copy")
        assert report.ok and copy.head() == source.head()
        assert verify(copy, read_data=True).ok and remote_verifies(source, spec)
        assert proxy.failures > 10 and proxy.cuts > 10
    copy.close()
    source.close()


# -- verify --remote ---------------------------------------------------------------------------
def test_verify_remote_reports_a_damaged_read_and_then_passes(
    folder: RemoteSpec, tmp_path: Path, faults: FaultPlan
) -> None:
    source = pushed(tmp_path, folder)
    save_spec(source.path, folder)
    faults.plan("get", "truncate", key=OBJECTS)
    report = verify_named_remote(source, name="offsite", read_data=True)
    assert not report.ok and len(report.problems) == 1
    assert verify_named_remote(source, name="offsite", read_data=True).ok
    source.close()


def test_verify_remote_with_storage_gone_is_one_line(
    folder: RemoteSpec, tmp_path: Path, faults: FaultPlan
) -> None:
    source = pushed(tmp_path, folder)
    save_spec(source.path, folder)
    faults.plan("get", "error", times=None)
    with pytest.raises(RemoteError) as caught:
        verify_named_remote(source, name="offsite", read_data=True)
    assert "\n" not in str(caught.value)
    source.close()


def test_an_empty_pack_on_the_remote_is_reported_damaged_not_a_failed_read(
    spec: RemoteSpec, tmp_path: Path
) -> None:
    # A pack cut to nothing (a writer killed by a provider that publishes empty bodies): its
    # trailer is read with get_tail, which must give empty bytes, so the pack reads as damaged.
    source = pushed(tmp_path, spec)
    open_backend(spec).put("packs/" + "e" * 64, b"")
    with connect(source, spec) as link:
        report = verify_remote(link)
    assert [p.message for p in report.problems] == [f"remote pack {'e' * 64} is damaged"]
    source.close()


# -- the wrapper itself ------------------------------------------------------------------------
def test_a_planned_fault_that_never_fires_fails_the_test(folder: RemoteSpec) -> None:
    faulty = FaultyBackend(open_backend(folder))
    faulty.plan("get", "error", key="objects/")
    faulty.plan("put", "error", after=1)
    faulty.put("config", b"x")  # uses up `after`; the fault itself is still waiting
    assert faulty.get("config") == b"x"  # another key: not this fault's
    with pytest.raises(AssertionError, match="never fired: get error on 'objects/'.*put error"):
        faulty.assert_all_fired()
    with pytest.raises(RemoteError):
        faulty.put("config", b"y")
    with pytest.raises(AssertionError, match="never fired: get error") as caught:
        faulty.assert_all_fired()
    assert "put" not in str(caught.value)


def test_faults_fire_in_order_and_are_thread_safe(folder: RemoteSpec) -> None:
    from concurrent.futures import ThreadPoolExecutor

    faulty = FaultyBackend(open_backend(folder))
    faulty.put("objects/ab/x", b"0123456789")
    first = faulty.plan("get", "truncate", times=3)
    second = faulty.plan("get", "corrupt", times=2)
    with ThreadPoolExecutor(8) as pool:
        got = list(pool.map(lambda _: faulty.get("objects/ab/x"), range(40)))
    assert (
        got.count(b"01234") == 3
        and len([g for g in got if len(g) == 10 and g != b"0123456789"]) == 2
    )
    assert got.count(b"0123456789") == 35
    assert first.fired == 3 and second.fired == 2
    faulty.assert_all_fired()


def test_the_seam_wraps_what_the_session_opens_and_is_put_back(folder: RemoteSpec) -> None:
    from mjvault.remotes import session

    original = session.open_storage
    with faults_on_remotes() as plan:
        plan.plan("exists", "error")
        backend = session.open_storage(folder)
        assert isinstance(backend, FaultyBackend)
        with pytest.raises(RemoteError):
            backend.exists("config")
    assert session.open_storage is original
    assert not isinstance(session.open_storage(folder), FaultyBackend)


def test_the_wrapper_answers_for_every_backend_method() -> None:
    # A method Backend gains (with a default) would otherwise skip the faults, or the inner
    # storage's own override, unseen: the wrapper must define each one itself.
    methods = {
        name
        for name, value in vars(Backend).items()
        if callable(value) and not name.startswith("_")
    }
    assert methods - set(vars(FaultyBackend)) == set()
