"""Every report's JSON, byte for byte: the shapes scripts read must not move.

Each class is built with every field set (floats with more decimals than the JSON keeps,
nested reports, paths, enums, datetimes) and its ``json.dumps(to_json())`` compared with the
text in tests/golden/reports.json, captured from the hand-written ``to_json`` methods the
:class:`mjvault.reports.Report` convention replaced.
"""

from __future__ import annotations

import ast
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import Enum
from pathlib import Path
from typing import Any

import pytest

import mjvault
from mjvault.collections import Collection
from mjvault.config.loader import Layer, Origin
from mjvault.config.report import SettingRow
from mjvault.demo import DemoJob, DemoResult
from mjvault.find.export_all import ExportAllReport
from mjvault.find.export_images import ExportImagesReport, ImageSettings
from mjvault.find.gallery import GalleryReport
from mjvault.followups import FollowupReport, PushOutcome
from mjvault.index.facets import Facets, FacetValue
from mjvault.index.pages import PageKey, Segment
from mjvault.integrity.copies import CopiesCheck
from mjvault.integrity.exclusions import Entry
from mjvault.integrity.forget import Decision, ForgetJobsReport, ForgetSnapshotsReport, KeepPolicy
from mjvault.integrity.gc import GcReport
from mjvault.integrity.pack import PackReport
from mjvault.integrity.problems import Problem
from mjvault.integrity.repair import PackRetired, RepairAction, RepairReport
from mjvault.integrity.retention import RetentionReport
from mjvault.integrity.rotate import RotateReport
from mjvault.integrity.verify import VerifyReport
from mjvault.integrity.viewcheck import ViewCheckReport
from mjvault.notify.sender import NotifyResult
from mjvault.remotes.config import RemoteSpec
from mjvault.remotes.lease import LeaseInfo
from mjvault.remotes.prune import RemoteGcReport, RemoteJobForget
from mjvault.remotes.pull import PullReport
from mjvault.remotes.push import PushReport
from mjvault.remotes.record import PushRecord
from mjvault.remotes.rekey import RekeyReport
from mjvault.remotes.remote import RemoteInfo
from mjvault.remotes.reseal import ObjectKeyState
from mjvault.remotes.survey import Survey, Tally
from mjvault.reports import Report, json_meta, to_json_value
from mjvault.schedule.base import Status
from mjvault.serve.tasks import Task
from mjvault.similarity.embeddings import EmbedReport
from mjvault.similarity.groups import Group, Member
from mjvault.similarity.nearest import Hit
from mjvault.similarity.prompts import Family, PromptHit
from mjvault.similarity.semantic import SemanticHit
from mjvault.snapshots import Snapshot
from mjvault.sources.importer import ImportReport
from mjvault.sources.importer import Problem as ImportProblem
from mjvault.sources.midjourney.client import AuthStatus
from mjvault.sync import MissingMedia, SyncReport
from mjvault.thumbnails import BackfillReport
from mjvault.views.check import ViewProblem
from mjvault.views.filters import ViewFilter
from mjvault.views.links import LinkKind
from mjvault.views.registry import ViewDefinition
from mjvault.views.report import RefreshReport, ViewsReport
from mjvault.writer import WriteStats

GOLDEN = Path(__file__).parent / "golden" / "reports.json"

T1 = datetime(2026, 3, 4, 5, 6, 7, 890123, tzinfo=UTC)
T2 = datetime(2026, 3, 5, 1, 2, 3, tzinfo=UTC)


def _snapshot(n: int = 1, collections: str | None = "c0ffee") -> Snapshot:
    return Snapshot(
        id=f"{n:02d}" * 32,
        time=T1,
        tree="ab" * 32,
        parent=None if n == 1 else "01" * 32,
        source="midjourney",
        host="host-a",
        tool="mjvault 9.9",
        stats={"jobs": 12 * n, "images": 40},
        collections=collections,
    )


def _problem(n: int = 1) -> Problem:
    return Problem(
        kind="corrupt",
        message=f"object {n} does not match its id",
        object_id="cd" * 32,
        jobs=["job-b", "job-a"],
        snapshots=["01" * 32],
        pack="ef" * 32,
    )


def _verify(seconds: float = 12.345678) -> VerifyReport:
    return VerifyReport(
        snapshots=3,
        tree_nodes=17,
        jobs_checked=120,
        objects_referenced=480,
        objects_read=470,
        bytes_read=1_234_567,
        packs=4,
        seconds=seconds,
        subset="1/5",
        views={"views": 2, "files": 9},
        problems=[_problem(1), _problem(2)],
    )


def _push(problems: list[str] | None = None) -> PushReport:
    return PushReport(
        objects_sent=5,
        bytes_sent=5000,
        packs_sent=1,
        objects_skipped=7,
        snapshots_sent=2,
        snapshots_present=3,
        problems=problems or [],
        notes=["a note"],
        seconds=1.23456,
    )


def _pack() -> PackReport:
    return PackReport(
        dry_run=True,
        small_packs=1,
        small_pack_bytes=2,
        packs_merged=3,
        loose_seen=4,
        loose_packed=5,
        loose_packed_bytes=6,
        loose_already_packed=7,
        loose_kept=8,
        damaged=9,
        objects_packed=10,
        packs_written=11,
        pack_bytes_written=12,
        packs_removed=13,
        loose_removed=14,
        bytes_removed=15,
        temp_files_removed=16,
        seconds=0.0004999,
        notes=["n1", "n2"],
    )


def _retention(error: str | None = None) -> RetentionReport:
    return RetentionReport(
        policy=KeepPolicy(last=3, daily=7),
        forgotten=[_snapshot(2), _snapshot(3, None)],
        kept=4,
        withheld=["04" * 32],
        push_to="s3",
        error=error,
    )


def _copies() -> CopiesCheck:
    return CopiesCheck(unsafe=["aa" * 32], remote="far", remotes=["far", "near"], forced=True)


def _member(n: int) -> Member:
    return Member(
        object_id=f"{n:02x}" * 32,
        job_id=f"job-{n}",
        index=n % 4,
        kind="png" if n else None,
        pixels=1024 * 1024,
        upscaled=bool(n % 2),
        distance=n,
        tile=n % 5,
    )


def _view_filter(collection: str | None) -> ViewFilter:
    return ViewFilter(
        types=("imagine", "upscale"),
        since=T1,
        until=T2,
        search="cat ears",
        params=(("ar", "16:9"), ("v", "7")),
        collection=collection,
    )


def _write_stats() -> WriteStats:
    return WriteStats(
        jobs_new=1,
        jobs_updated=2,
        jobs_unchanged=3,
        jobs_removed=4,
        media_new=5,
        media_deduplicated=6,
        media_bytes=7,
        objects_written=8,
        bytes_written=9,
        resumed_from_checkpoint=True,
        extra={"records_stored": 11},
    )


def _sync(seconds: float = 3.14159265) -> SyncReport:
    return SyncReport(
        source="midjourney",
        generation="gen-1",
        jobs_listed=10,
        jobs_new=2,
        jobs_updated=3,
        jobs_unchanged=4,
        jobs_skipped=1,
        jobs_forgotten=1,
        records_malformed=2,
        malformed=["bad one", "bad two"],
        listing_cut_short="the server said stop",
        images_downloaded=8,
        images_deduplicated=1,
        images_reused=2,
        images_missing=1,
        videos_downloaded=1,
        bytes_downloaded=123456,
        listing_pages=3,
        stopped_early=True,
        history_complete=True,
        resumed=True,
        seconds=seconds,
        snapshot="05" * 32,
        dry_run=True,
        would_fetch=[{"job": "j1", "images": [0, 1]}],
        missing=[MissingMedia("j2", 3, "https://cdn/x.png", "404", gone=False)],
        views={"grid": {"written": 3}},
        thumbnails_made=5,
        thumbnails_left=6,
    )


def _refresh(view: str = "a") -> RefreshReport:
    report = RefreshReport(view, f"/views/{view}", "5eed", "full", "symlink", 9, 4, 3, 2, 1)
    report.conflict_paths.append("x/1.png")
    report.note("kept a file the user changed")
    return report


# Each case: a name and the instance whose JSON the golden file holds under that name.
CASES: dict[str, Callable[[], Any]] = {
    "SyncReport": _sync,
    "SyncReport.defaults": SyncReport,
    "Origin": lambda: Origin(Layer.VAULT, "/v/config.toml", "work"),
    "SettingRow": lambda: SettingRow(
        key="sync.workers",
        value=4,
        text="4",
        origin=Origin(Layer.ENV, "MJVAULT_SYNC_WORKERS"),
        secret=False,
    ),
    "NotifyResult": lambda: NotifyResult("mailto://***@x", False, "refused"),
    "ViewProblem": lambda: ViewProblem("grid", "/v/grid/a.png", "job-1", 2, "ab" * 32, "missing"),
    "ViewFilter": lambda: _view_filter(None),
    "ViewFilter.collection": lambda: _view_filter("faves"),
    "ViewFilter.empty": ViewFilter,
    "ViewDefinition": lambda: ViewDefinition(
        name="grid",
        directory=Path("/home/u/grid"),
        template="{date}/{id}",
        link=LinkKind.HARDLINK,
        filter=_view_filter("faves"),
        snapshot="06" * 32,
        auto_refresh=False,
        embed_metadata=True,
        private=None,
    ),
    "Task": lambda: Task(
        id="t1",
        kind="sync",
        remote="far",
        state="failed",
        done=3,
        total=9,
        message="stopped",
        started=T1,
        finished=T2,
        code="locked",
        holder="host (pid 1)",
        report={"jobs": 1},
    ),
    "Task.running": lambda: Task(id="t2", kind="push", started=T2),
    "Entry": lambda: Entry("job-1", "2026-01-01T00:00:00Z", "search: cats", ["far"]),
    "VerifyReport": _verify,
    "VerifyReport.ok": VerifyReport,
    "PackReport": _pack,
    "GcReport": lambda: GcReport(
        dry_run=False,
        grace_seconds=3600.123456,
        snapshots=1,
        tree_nodes=2,
        jobs=3,
        checkpoint_protected=True,
        views=4,
        objects_seen=5,
        objects_kept=6,
        unreferenced=7,
        kept_young=8,
        kept_young_bytes=9,
        removed=10,
        removed_bytes=11,
        packs_seen=12,
        packs_rewritten=13,
        packs_written=14,
        pack_bytes_written=15,
        packs_removed=16,
        pack_bytes_removed=17,
        temp_files_removed=18,
        temp_bytes_removed=19,
        mark_memory_bytes=20,
        seconds=9.87654321,
        removed_ids=["ab" * 32],
        notes=["note"],
        copies={"ok": True},
    ),
    "CopiesCheck": _copies,
    "CopiesCheck.ok": CopiesCheck,
    "ViewCheckReport": lambda: ViewCheckReport(views=2, files=10, problems=[_problem()]),
    "Problem": _problem,
    "Problem.bare": lambda: Problem("index", "stale"),
    "RepairAction": lambda: RepairAction(
        "ab" * 32, "corrupt", ["j"], ["s"], "/q/x", "remote far", None
    ),
    "RepairAction.unrepaired": lambda: RepairAction("cd" * 32, "missing", reason="no copy"),
    "RepairReport": lambda: RepairReport(
        before=_verify(),
        after=_verify(0.5),
        actions=[
            RepairAction("ab" * 32, "corrupt", source="far"),
            RepairAction("cd" * 32, "missing", reason="gone"),
        ],
        index_rebuilt=True,
        notes=["rebuilt"],
        packs=[PackRetired("ef" * 32, "/q/p", 3, 1)],
    ),
    "PackRetired": lambda: PackRetired("ef" * 32, "/q/p", 3, 1),
    "Decision": lambda: Decision(_snapshot(), ["last 3", "daily 7"]),
    "ForgetSnapshotsReport": lambda: ForgetSnapshotsReport(
        dry_run=True,
        decisions=[Decision(_snapshot(), ["last"]), Decision(_snapshot(2))],
        forgotten=["02" * 32],
        guard=_copies(),
    ),
    "ForgetSnapshotsReport.bare": lambda: ForgetSnapshotsReport(dry_run=False),
    "ForgetJobsReport": lambda: ForgetJobsReport(
        jobs=["j1", "j2"],
        dry_run=False,
        rewritten={"01" * 32: "02" * 32},
        head="02" * 32,
        checkpoint_rewritten=True,
        views_refreshed=["grid"],
        notes=["n"],
        added=["j1"],
        already_forgotten=["j2"],
    ),
    "RotateReport": lambda: RotateReport(
        key="k1",
        resumed=True,
        loose_resealed=1,
        loose_bytes=2,
        packs_rewritten=3,
        pack_bytes=4,
        objects_checked=5,
        stragglers=6,
        views_resealed=7,
        documents_resealed=8,
        keys_removed=["k0"],
        remotes=["far"],
        damaged=["ab" * 32],
        seconds=2.0005,
    ),
    "RetentionReport": _retention,
    "RetentionReport.error": lambda: _retention("locked"),
    "DemoResult": lambda: DemoResult(
        vault=Path("/tmp/demo"),
        created=True,
        report=_sync(),
        jobs_in_vault=12,
        samples=[DemoJob("j1", "imagine", "2026-01-01", "a cat", ["/tmp/demo/a.png"])],
    ),
    "EmbedReport": lambda: EmbedReport("clip", 512, 10, 8, 1, 1, 0),
    "Member": lambda: _member(3),
    "Member.unknown": lambda: _member(0),
    "Group": lambda: Group(members=[_member(1), _member(2)], best=_member(1), distance=4),
    "PromptHit": lambda: PromptHit("job-1", 87.654321, "a cat"),
    "Family": lambda: Family(3, "a cat", ("j1", "j2", "j3"), T1, T2),
    "Family.undated": lambda: Family(2, "a dog", ("j1", "j2"), None, None),
    "SemanticHit": lambda: SemanticHit("ab" * 32, "job-1", 2, 0.876543219),
    "Hit": lambda: Hit("ab" * 32, 3, 5, "job-1", 1),
    "Collection": lambda: Collection("faves", 12, ("aa" * 32, "bb" * 32)),
    "Status": lambda: Status(
        scheduler="systemd",
        name="mjvault-sync",
        installed=True,
        enabled=None,
        files=["/etc/x.timer"],
        schedule="hourly",
        next_run="soon",
        last_run=None,
        log_file="/var/log/x",
        last_log_line="ok",
        notes=["why"],
    ),
    "WriteStats": _write_stats,
    "ImportReport": lambda: ImportReport(
        source="/dl",
        records_found=1,
        jobs_seen=2,
        records_repeated=3,
        images_seen=4,
        images_missing=5,
        bytes_read=6,
        records_unchanged=7,
        images_unchanged=8,
        jobs_malformed=9,
        jobs_forgotten=10,
        problems=[ImportProblem("/dl/x", "unknown file")],
        stats=_write_stats(),
        snapshot="07" * 32,
    ),
    "RemoteSpec": lambda: RemoteSpec(
        "far", "s3://b/p", True, "http://127.0.0.1:9000", "eu", True, True, True
    ),
    "RemoteGcReport": lambda: RemoteGcReport(
        dry_run=True,
        grace_seconds=60.987654,
        snapshots=1,
        tree_nodes=2,
        jobs=3,
        objects_seen=4,
        objects_kept=5,
        unreferenced=6,
        kept_young=7,
        kept_young_bytes=8,
        removed=9,
        removed_bytes=1000,
        packs_seen=11,
        packs_rewritten=12,
        packs_written=13,
        pack_bytes_written=300,
        packs_removed=15,
        pack_bytes_removed=500,
        packs_kept_damaged=1,
        seconds=4.44444,
        removed_ids=["ab" * 32],
        notes=["n"],
    ),
    "RemoteJobForget": lambda: RemoteJobForget("far", True, ["01" * 32], "timeout"),
    "PushRecord": lambda: PushRecord(
        "rid", {"bb" * 32, "aa" * 32}, 2, "2026-01-01T00:00:00Z", {"objects_sent": 1}
    ),
    "RemoteInfo": lambda: RemoteInfo("rid", "2026-01-01T00:00:00+00:00", {"cipher": "x"}, "plain"),
    "PushReport": lambda: _push(["failed"]),
    "PushReport.ok": _push,
    "Tally": lambda: Tally(3, 300),
    "Survey": lambda: Survey(
        name="far",
        url="file:///r",
        remote_id="rid",
        version=3,
        encryption=None,
        clone_as="plain",
        kinds={"objects": Tally(3, 300), "packs": Tally(1, 1000)},
        last_push={"objects_sent": 3},
        seen="2026-01-01T00:00:00Z",
        local_snapshots=4,
        local_snapshots_held=3,
        forgotten_pending=None,
    ),
    "RekeyReport": lambda: RekeyReport("passphrase", ["k2"], ["k1"]),
    "LeaseInfo": lambda: LeaseInfo("leases/x", "host", 42, "2026-01-01", 1767225600.5, "lid", True),
    "PullReport": lambda: PullReport(
        objects_received=1,
        bytes_received=2,
        snapshots_received=3,
        head="01" * 32,
        head_moved=True,
        diverged=True,
        jobs_indexed=9,
        problems=["p"],
        seconds=7.77777,
    ),
    "PullReport.ok": PullReport,
    "ObjectKeyState": lambda: ObjectKeyState("c1", "c2", ["c0"]),
    "BackfillReport": lambda: BackfillReport(["s", "m"], 10, 8, 1, 1, 0, ["e"], True, 7, 3),
    "BackfillReport.nohashes": lambda: BackfillReport(["m"], 1),
    "Snapshot": _snapshot,
    "PushOutcome": lambda: PushOutcome("far", _push(), None),
    "PushOutcome.failed": lambda: PushOutcome("near", None, "refused"),
    "FollowupReport": lambda: FollowupReport(
        retention=_retention(),
        packing=_pack(),
        pushes=[PushOutcome("far", _push())],
        caught_up=["near"],
        verify=_verify(),
    ),
    "FollowupReport.bare": FollowupReport,
    "ExportImagesReport": lambda: ExportImagesReport(
        directory=Path("/out"),
        settings=ImageSettings("jpeg", 80, 1024, True, True),
        template="{id}",
        jobs=1,
        images_written=2,
        images_kept=3,
        images_missing=4,
        not_images=5,
        bytes_read=6,
        bytes_written=7,
        problems=["p"],
        problem_count=1,
    ),
    "ExportAllReport": lambda: ExportAllReport(
        directory=Path("/out"),
        snapshot="01" * 32,
        template="{id}",
        jobs=1,
        records_written=2,
        records_kept=3,
        images_written=4,
        images_kept=5,
        images_missing=6,
        bytes_written=7,
        problems=["p"],
        problem_count=1,
    ),
    "GalleryReport": lambda: GalleryReport(
        directory=Path("/g"),
        jobs=1,
        jobs_without_images=2,
        images=3,
        videos=4,
        thumbs_made=5,
        thumbs_cached=6,
        unreadable=["ab" * 32],
        unreadable_count=1,
        decrypted_copies=2,
        decrypted_dir=Path("/g/.plain"),
        chunks=3,
        chunks_written=1,
    ),
    "GalleryReport.plain": lambda: GalleryReport(directory=Path("/g")),
    "AuthStatus": lambda: AuthStatus(True, "v3", "u-1", None, "signed in", "__Host-session"),
    "FacetValue": lambda: FacetValue("16:9", 4, "ar:16:9"),
    "Facets": lambda: Facets(
        total=5,
        values={
            "type": [FacetValue("upscale", 3, "type:upscale"), FacetValue(None, 2, None)],
            "ar": [],
        },
    ),
    "Segment": lambda: Segment(PageKey("newest", 1_700_000_000_123_456, b"job-1"), 3, T1, T2),
    "Segment.first": lambda: Segment(None, 0, None, None),
    "RefreshReport": _refresh,
    "ViewsReport": lambda: ViewsReport([_refresh(), _refresh("b")], {"c": "damaged"}),
}


def _dump(name: str) -> str:
    return json.dumps(CASES[name]().to_json())


def _golden() -> dict[str, str]:
    doc: dict[str, str] = json.loads(GOLDEN.read_text())
    return doc


@pytest.mark.parametrize("name", sorted(CASES))
def test_report_json_is_unchanged(name: str) -> None:
    assert _dump(name) == _golden()[name]


def test_every_golden_has_a_case() -> None:
    assert sorted(_golden()) == sorted(CASES)


class Colour(Enum):
    RED = "red"


@dataclass
class Inner:
    a: int = 1
    when: datetime = T2


@dataclass
class Sample(Report):
    json_before = ("first",)
    json_after = ("last",)

    seconds: float = 1.23456
    grace_seconds: float = 1.23456
    score: float = field(default=0.123456, metadata=json_meta(digits=2))
    object_id: str = field(default="x", metadata=json_meta(name="object"))
    hidden: str = field(default="secret", metadata=json_meta(omit=True))
    path: Path = Path("/a/b")
    tags: frozenset[str] = frozenset({"b", "a"})
    pair: tuple[int, ...] = (1, 2)
    colour: Colour = Colour.RED
    when: datetime = T1
    inner: Inner = field(default_factory=Inner)
    nested: list[dict[str, Any]] = field(default_factory=lambda: [{"p": Path("/c")}])

    @property
    def first(self) -> bool:
        return True

    @property
    def last(self) -> int:
        return 9


def test_the_convention() -> None:
    """The documented rules, one by one (mjvault/reports.py)."""
    assert Sample().to_json() == {
        "first": True,
        "seconds": 1.235,
        "grace_seconds": 1.23456,
        "score": 0.12,
        "object": "x",
        "path": "/a/b",
        "tags": ["a", "b"],
        "pair": [1, 2],
        "colour": "red",
        "when": "2026-03-04T05:06:07.890123+00:00",
        "inner": {"a": 1, "when": "2026-03-05T01:02:03+00:00"},
        "nested": [{"p": "/c"}],
        "last": 9,
    }
    assert list(Sample().to_json()) == [
        "first",
        "seconds",
        "grace_seconds",
        "score",
        "object",
        "path",
        "tags",
        "pair",
        "colour",
        "when",
        "inner",
        "nested",
        "last",
    ]


def test_a_nested_report_gives_its_own_json() -> None:
    assert to_json_value([Sample(hidden="y")])[0]["first"] is True
    assert to_json_value(os.sep) == os.sep


# Classes with a to_json of their own that are not reports: stored documents whose bytes are
# a format (mjvault/reports.py).
NOT_REPORTS = {
    "mjvault/views/filters.py": {"ViewFilter"},
    "mjvault/remotes/record.py": {"PushRecord"},
    "mjvault/remotes/remote.py": {"RemoteInfo"},
}
SAYS_WHY = ("# Its own shape", "# Not a report")


def _json_classes() -> Iterator[tuple[str, ast.ClassDef, ast.FunctionDef, list[str]]]:
    root = Path(mjvault.__file__).parent
    for path in sorted(root.rglob("*.py")):
        source = path.read_text()
        if "def to_json(self)" not in source:
            continue
        lines = source.splitlines()
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.ClassDef):
                for item in node.body:
                    if isinstance(item, ast.FunctionDef) and item.name == "to_json":
                        rel = path.relative_to(root.parent).as_posix()
                        body = lines[item.lineno - 1 : item.end_lineno]
                        yield rel, node, item, body


def test_every_json_class_is_a_report_or_says_why_not() -> None:
    """A new report mixes in Report; one that writes its own to_json says why, in a comment."""
    seen = 0
    for path, cls, method, body in _json_classes():
        if len(method.args.args) != 1:  # config/types.py: a value's JSON, not the object's
            continue
        seen += 1
        bases = {ast.unparse(b) for b in cls.bases}
        if cls.name in NOT_REPORTS.get(path, set()):
            assert any(why in line for line in body for why in SAYS_WHY), (path, cls.name)
            continue
        if path == "mjvault/reports.py":
            continue
        assert "Report" in bases, f"{path}: {cls.name} has a to_json but is not a Report"
        assert any(why in line for line in body for why in SAYS_WHY), (path, cls.name)
    assert seen >= 20


if __name__ == "__main__":  # pragma: no cover - writes the golden file from today's code
    GOLDEN.write_text(json.dumps({n: _dump(n) for n in sorted(CASES)}, indent=1) + "\n")
