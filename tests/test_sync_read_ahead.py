"""Reading the next listing page while this one is walked (`sources/midjourney/readahead.py`).

The iterator alone (order, errors where they happened, at most one item ahead, a thread that
stops when the walk ends), then the real client against the Midjourney test server: a full
listing asks for page N+1 while page N is walked, an incremental sync asks for no page more
than it needs, and a page that fails mid-listing still leaves the jobs before it in the vault.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mjvault import Vault
from mjvault.errors import SourceError
from mjvault.sources.midjourney import MidjourneyClient
from mjvault.sources.midjourney.readahead import ReadAhead
from mjvault.sync import KNOWN_RUN, SyncOptions
from mjvault.testing.accounts import Account
from mjvault.testing.faults import Faults
from mjvault.testing.server import FakeMidjourney
from tests.test_sync import TOKEN, run_sync, settings_for

PAGE = 30


def _wait_for(condition: object, seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return True
        time.sleep(0.01)
    return False


class Counted:
    """A source that counts what was read from it and whether it was closed."""

    def __init__(self, items: int, fail_at: int | None = None) -> None:
        self.read = 0
        self.closed = threading.Event()
        self._items = items
        self._fail_at = fail_at

    def __iter__(self) -> Iterator[int]:
        try:
            for number in range(self._items):
                if number == self._fail_at:
                    raise SourceError(f"page {number} did not come")
                self.read += 1
                yield number
        finally:
            self.closed.set()


def test_items_come_in_order_and_all_of_them() -> None:
    assert list(ReadAhead(iter(Counted(50)))) == list(range(50))


def test_an_error_is_raised_where_it_happened_after_every_item_before_it() -> None:
    got: list[int] = []
    with pytest.raises(SourceError, match="page 7 did not come"):
        for item in ReadAhead(iter(Counted(20, fail_at=7))):
            got.append(item)
    assert got == list(range(7))


def test_never_more_than_one_item_ahead() -> None:
    source = Counted(10)
    ahead = ReadAhead(iter(source))
    for taken in range(1, 6):
        next(ahead)
        # Given time, the thread reads the next item, and not the one after it.
        assert _wait_for(lambda taken=taken: source.read == taken + 1)
        time.sleep(0.05)
        assert source.read == taken + 1
    ahead.close()


def test_closing_or_dropping_stops_the_thread_and_closes_the_source() -> None:
    source = Counted(1_000)
    ahead = ReadAhead(iter(source))
    next(ahead)
    ahead.close()
    assert source.closed.wait(5)
    assert source.read <= 2
    with pytest.raises(StopIteration):
        next(ahead)

    never_iterated = Counted(1_000)
    dropped = ReadAhead(iter(never_iterated))
    del dropped
    assert never_iterated.closed.wait(5)
    assert never_iterated.read <= 1


def test_a_full_listing_asks_for_the_next_page_while_this_one_is_walked() -> None:
    account = Account.generate(61, PAGE * 4)
    with FakeMidjourney(account, token=TOKEN) as server:
        for read_ahead in (False, True):
            server.reset_stats()
            with MidjourneyClient(settings_for(server, page_size=PAGE)) as client:
                listing = client.list_jobs(read_ahead=read_ahead)
                first_page = [next(listing) for _ in range(PAGE)]
                assert len({job.id for job in first_page}) == PAGE
                asked = server.stats.total_listing_requests
                if read_ahead:
                    assert _wait_for(lambda asked=asked: asked() == 2)
                time.sleep(0.2)  # never a third: one page ahead at most
                assert asked() == (2 if read_ahead else 1)
                rest = list(listing)
            assert len(first_page) + len(rest) == len(
                {job.id for job in first_page} | {job.id for job in rest}
            )
            assert len(first_page) + len(rest) >= PAGE * 4 - 2  # v3 leaves out a video or two


def test_an_incremental_sync_asks_for_no_page_more_than_it_needs(tmp_path: Path) -> None:
    account = Account.generate(62, PAGE * 5)
    Vault.init(tmp_path / "vault").close()
    with FakeMidjourney(account, token=TOKEN) as server:
        first = run_sync(tmp_path / "vault", server, page_size=PAGE)
        assert first.jobs_new > PAGE * 4
        server.add_jobs(3)
        server.reset_stats()
        again = run_sync(tmp_path / "vault", server, page_size=PAGE)
        assert again.jobs_new == 3
        time.sleep(0.2)  # a page read ahead would arrive now
        # The listing ends after KNOWN_RUN known jobs in a row: the pages holding those and
        # the three new ones, and not one more.
        assert server.stats.total_listing_requests() == -(-(3 + KNOWN_RUN) // PAGE)


def test_a_page_that_fails_mid_listing_keeps_the_jobs_before_it(tmp_path: Path) -> None:
    """The fourth page is read on the thread while the third is walked: its error is raised
    only after every job of the three pages before it is stored, and the next sync ends it."""
    account = Account.generate(63, PAGE * 6)
    Vault.init(tmp_path / "vault").close()
    with FakeMidjourney(account, token=TOKEN) as server:
        server.faults = Faults(truncated_page=4)
        with pytest.raises(SourceError, match="page 4") as failed:
            run_sync(tmp_path / "vault", server, SyncOptions(full=True), page_size=PAGE)
        kept = re.search(r"(\d+) new jobs fetched before that are kept", str(failed.value))
        assert kept is not None, str(failed.value)
        assert PAGE * 3 - 2 <= int(kept.group(1)) <= PAGE * 3
        server.faults = Faults()
        report = run_sync(tmp_path / "vault", server, SyncOptions(full=True), page_size=PAGE)
        assert report.resumed
        with Vault.open(tmp_path / "vault") as vault:
            assert vault.current_index().job_count() >= PAGE * 6 - 2


def test_a_listing_ended_by_its_stop_rule_leaves_no_thread_reading() -> None:
    account = Account.generate(64, PAGE * 6)

    def readers() -> list[threading.Thread]:
        return [t for t in threading.enumerate() if t.name == "listing read-ahead"]

    with (
        FakeMidjourney(account, token=TOKEN) as server,
        MidjourneyClient(settings_for(server, page_size=PAGE)) as client,
    ):
        seen: list[str] = []

        def stop(job: object) -> bool:
            return len(seen) >= PAGE + 5

        listing = client.list_jobs(read_ahead=True, stop=stop)
        for job in listing:
            seen.append(job.id)
        assert len(seen) == PAGE + 5 and listing.stopped_early
        assert _wait_for(lambda: not readers())
        assert server.stats.total_listing_requests() <= 3
