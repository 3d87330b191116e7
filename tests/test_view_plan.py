"""The views' planner alone: no file system, no file list, no vault.

An in-memory folder stands for the view's directory and list; the property is that carrying
a plan out on it yields exactly the wanted files, and that planning again afterwards (the
next refresh, whose run-only flags are then settled) finds nothing to do.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from mjvault.model import Job
from mjvault.tree import JobEntry
from mjvault.views.links import LinkKind
from mjvault.views.paths import fold
from mjvault.views.plan import Key, Making, Plan, Want, in_batch_order, name_groups, plan_jobs
from mjvault.views.registry import FileRecord

JOB = Job(
    id="job",
    enqueue_time=None,
    type="grid",
    job_type=None,
    event_type=None,
    prompt="fox",
    full_command="fox",
)


def want(plain: str, oid: str = "a" * 64, raw: bool = True) -> Want:
    return Want(plain, oid, JOB, raw)


def by_job(records: dict[Key, FileRecord]) -> dict[str, dict[int, FileRecord]]:
    files: dict[str, dict[int, FileRecord]] = {}
    for (job_id, index), record in records.items():
        files.setdefault(job_id, {})[index] = record
    return files


class Folder:
    """A view's directory and file list in memory: path -> (object, kind), key -> record."""

    def __init__(self, records: dict[Key, FileRecord]) -> None:
        self.records = dict(records)
        self.files = {record.path: (record.oid, record.kind) for record in records.values()}

    def carry_out(self, plan: Plan, making: Making) -> None:
        """What the applier does to a folder with no file of the user's in the way."""
        for key, record in plan.removals:
            assert self.records.pop(key) == record
            del self.files[record.path]
        for key, record, wanted in plan.replacements:
            assert self.records[key] == record and record.path in self.files
            kind = making.kind_for(wanted)
            self.files[record.path] = (wanted.oid, kind)
            self.records[key] = FileRecord(record.path, wanted.oid, kind, record.plain)
        folded = {fold(path) for path in self.files}
        for key, wanted in plan.placements.items():
            assert key not in self.records
            path = wanted.plain
            if fold(path) in folded:  # taken: the image's own suffix, as the views name it
                path = f"{wanted.plain}~{key[0]}_{key[1]}"
            assert fold(path) not in folded
            folded.add(fold(path))
            kind = making.kind_for(wanted)
            self.files[path] = (wanted.oid, kind)
            plain = wanted.plain if path != wanted.plain else None
            self.records[key] = FileRecord(path, wanted.oid, kind, plain)

    def shows(self) -> dict[Key, tuple[str, str, LinkKind]]:
        return {k: (r.wanted_path, r.oid, r.kind) for k, r in self.records.items()}


KEYS = st.tuples(st.sampled_from(["j1", "j2", "j3"]), st.integers(0, 2))
NAMES = st.sampled_from(["fox.png", "Fox.png", "owl.png", "a/fox.png", "a/owl.webp"])
OIDS = st.sampled_from(["a" * 64, "b" * 64, "c" * 64])
KINDS = st.sampled_from(list(LinkKind))
WANTS = st.builds(want, NAMES, OIDS, st.booleans())


@st.composite
def recorded(draw: st.DrawFn) -> dict[Key, FileRecord]:
    """A consistent file list: one distinct path per image, maybe suffixed."""
    records: dict[Key, FileRecord] = {}
    for key in draw(st.sets(KEYS, max_size=6)):
        plain = draw(NAMES)
        suffixed = draw(st.booleans())
        path = f"{plain}~{key[0]}_{key[1]}" if suffixed else plain
        if any(fold(r.path) == fold(path) for r in records.values()):
            path = f"{plain}~{key[0]}_{key[1]}"
        records[key] = FileRecord(
            path, draw(OIDS), draw(KINDS), plain if path != plain else None, 1, 1
        )
    return records


@settings(max_examples=300, deadline=None)
@given(
    recorded(),
    st.dictionaries(KEYS, WANTS, max_size=6),
    KINDS,
    st.booleans(),
    st.booleans(),
)
def test_carrying_out_a_plan_gives_the_wanted_files_and_a_second_plan_is_empty(
    records: dict[Key, FileRecord],
    desired: dict[Key, Want],
    kind: LinkKind,
    embed_changed: bool,
    vault_moved: bool,
) -> None:
    making = Making(kind, embed_changed, vault_moved)
    touched = {key[0] for key in (*records, *desired)}
    folder = Folder(records)
    plan = plan_jobs(touched, dict(desired), by_job(records), making)
    folder.carry_out(plan, making)
    wanted = {k: (w.plain, w.oid, making.kind_for(w)) for k, w in desired.items()}
    assert folder.shows() == wanted
    assert set(folder.files) == {r.path for r in folder.records.values()}
    settled = Making(kind)  # the next refresh: the view's state names the new setting, place
    assert not plan_jobs(touched, dict(desired), by_job(folder.records), settled)


@settings(max_examples=100, deadline=None)
@given(recorded(), st.dictionaries(KEYS, WANTS, max_size=6), KINDS)
def test_a_job_not_touched_keeps_its_files(
    records: dict[Key, FileRecord], desired: dict[Key, Want], kind: LinkKind
) -> None:
    """Only the jobs of the batch are planned: another job's files are neither removed nor
    replaced, whatever is wanted of it."""
    plan = plan_jobs({"j1"}, dict(desired), by_job(records), Making(kind))
    assert all(key[0] == "j1" for key, _ in plan.removals)
    assert all(key[0] == "j1" for key, _, _ in plan.replacements)


def test_a_new_template_path_removes_the_file_and_places_the_image_again() -> None:
    record = FileRecord("fox.png", "a" * 64, LinkKind.SYMLINK)
    plan = plan_jobs(
        {"j"}, {("j", 0): want("owl.png")}, {"j": {0: record}}, Making(LinkKind.SYMLINK)
    )
    assert plan.removals == [(("j", 0), record)]
    assert plan.replacements == []
    assert plan.placements == {("j", 0): want("owl.png")}


def test_a_suffixed_file_whose_template_path_is_the_same_stays() -> None:
    record = FileRecord("fox~j_0.png", "a" * 64, LinkKind.SYMLINK, plain="fox.png")
    plan = plan_jobs(
        {"j"}, {("j", 0): want("fox.png")}, {"j": {0: record}}, Making(LinkKind.SYMLINK)
    )
    assert not plan


def test_another_object_at_the_same_path_is_a_replacement() -> None:
    record = FileRecord("fox.png", "a" * 64, LinkKind.SYMLINK)
    new = want("fox.png", "b" * 64)
    plan = plan_jobs({"j"}, {("j", 0): new}, {"j": {0: record}}, Making(LinkKind.SYMLINK))
    assert (plan.removals, plan.replacements, plan.placements) == (
        [],
        [(("j", 0), record, new)],
        {},
    )


def test_a_job_gone_removes_its_files() -> None:
    records = {
        0: FileRecord("a.png", "a" * 64, LinkKind.COPY),
        1: FileRecord("b.png", "b" * 64, LinkKind.COPY),
    }
    plan = plan_jobs({"j"}, {}, {"j": records}, Making(LinkKind.COPY))
    assert plan.removals == [(("j", 0), records[0]), (("j", 1), records[1])]
    assert not plan.placements


def test_jobs_without_files_place_every_wanted_image_as_given() -> None:
    desired = {("j", 1): want("b.png"), ("j", 0): want("a.png")}
    plan = plan_jobs({"j"}, desired, {}, Making(LinkKind.SYMLINK))
    assert plan.placements is desired  # no copy of a batch's worth of entries
    assert list(plan.placements) == [("j", 1), ("j", 0)]


def test_what_makes_an_unchanged_image_be_made_again() -> None:
    raw, framed = want("a.png"), want("a.png", raw=False)

    def record(kind: LinkKind) -> FileRecord:
        return FileRecord("a.png", "a" * 64, kind)

    symlinks = Making(LinkKind.SYMLINK)
    assert not symlinks.needs_remake(record(LinkKind.SYMLINK), raw)
    assert symlinks.needs_remake(record(LinkKind.HARDLINK), raw)  # the link type changed
    assert not symlinks.needs_remake(record(LinkKind.COPY), framed)  # framed: always a copy
    assert symlinks.kind_for(framed) is LinkKind.COPY
    # A reflink that fell back to a copy is what the view makes on that file system.
    assert not Making(LinkKind.REFLINK).needs_remake(record(LinkKind.COPY), raw)
    assert Making(LinkKind.COPY).needs_remake(record(LinkKind.REFLINK), raw)
    embedded = Making(LinkKind.COPY, embed_changed=True)
    assert embedded.needs_remake(record(LinkKind.COPY), raw)
    assert not Making(LinkKind.SYMLINK, embed_changed=True).needs_remake(
        record(LinkKind.SYMLINK), raw
    )
    moved = Making(LinkKind.SYMLINK, vault_moved=True)
    assert moved.needs_remake(record(LinkKind.SYMLINK), raw)  # its target is the old place
    assert not Making(LinkKind.HARDLINK, vault_moved=True).needs_remake(
        record(LinkKind.HARDLINK), raw
    )


def test_names_are_grouped_by_their_case_folded_path() -> None:
    placements = {
        ("j1", 0): want("Fox.png"),
        ("j2", 0): want("fox.png"),
        ("j3", 0): want("owl.png"),
    }
    first, shared = name_groups(placements)
    assert first == {"fox.png": ("j1", 0), "owl.png": ("j3", 0)}
    assert shared == {"fox.png": {("j1", 0): "Fox.png", ("j2", 0): "fox.png"}}


def test_jobs_named_two_ways_come_back_in_the_batchs_order() -> None:
    batch: list[tuple[str, JobEntry | None]] = [
        ("j1", JobEntry("j1", "r" * 64, ("a" * 64, None))),
        ("j2", JobEntry("j2", "r" * 64, ("b" * 64,))),
        ("j3", None),
        ("j4", JobEntry("j4", "r" * 64, ("c" * 64,))),
    ]
    desired = {("j4", 0): want("d.png"), ("j1", 0): want("a.png")}
    others = {1: {("j2", 0): want("b.png")}}
    ordered = in_batch_order(batch, {0, 3}, desired, others)
    assert list(ordered) == [("j1", 0), ("j2", 0), ("j4", 0)]
