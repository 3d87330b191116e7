"""What a refresh must do to a view's files: the pure half of reconciling.

Given the files a batch of jobs should have (their wanted entries) and the files the view's
list says it made for them, :func:`plan_jobs` says which files go, which are made again and
which are new. It reads no file and no table, so it is tested on its own with an in-memory
folder (tests/test_view_plan.py); the applier (mjvault.views.apply) carries a plan out,
checking at each path that what it touches is still the view's own.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import NamedTuple

from mjvault.model import Job
from mjvault.tree import JobEntry
from mjvault.views.links import LinkKind
from mjvault.views.paths import fold
from mjvault.views.registry import FileRecord

Key = tuple[str, int]  # (job id, image index)


class Want(NamedTuple):
    """One file a view should have: its template path, the object it shows, its job."""

    plain: str
    oid: str
    job: Job
    raw: bool = True  # the object's file is the image itself (links can point at it)


@dataclass(frozen=True, slots=True)
class Making:
    """How the view makes its files in this run: what tells a file that must be made again.

    ``embed_changed`` (the metadata setting changed since the files were made) and
    ``vault_moved`` (symlinks point at the old place) hold for one run only: once it is
    done, the view's state records the new setting and place.
    """

    kind: LinkKind
    embed_changed: bool = False
    vault_moved: bool = False

    def kind_for(self, want: Want) -> LinkKind:
        """The view's link type, or a copy for an object that is not the image itself."""
        return self.kind if want.raw else LinkKind.COPY

    def needs_remake(self, record: FileRecord, want: Want) -> bool:
        """Must an unchanged image's file be made again (link type changed, vault moved)?"""
        expected = self.kind if want.raw else LinkKind.COPY
        if record.kind is not expected and not (
            expected is LinkKind.REFLINK and record.kind is LinkKind.COPY
        ):
            return True
        if self.embed_changed and record.kind in (LinkKind.COPY, LinkKind.REFLINK):
            return True
        return self.vault_moved and record.kind is LinkKind.SYMLINK


@dataclass(slots=True)
class Plan:
    """The operations for one batch, carried out in this order: removals first (they free
    names), then replacements (same path, new file), then placements (new files, whose
    final paths are assigned when they are placed, against the names then taken)."""

    removals: list[tuple[Key, FileRecord]] = field(default_factory=list)
    replacements: list[tuple[Key, FileRecord, Want]] = field(default_factory=list)
    placements: dict[Key, Want] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.removals or self.replacements or self.placements)


def plan_jobs(
    touched: Iterable[str],
    desired: dict[Key, Want],
    files: Mapping[str, Mapping[int, FileRecord]],
    making: Making,
) -> Plan:
    """The plan that makes the files of the ``touched`` jobs those ``desired``.

    ``desired`` holds every file those jobs should have (in the order they are to be
    placed; the plan may share it), ``files`` what the view's list records for them (jobs without files may be
    absent). A recorded file whose template path changed is removed and its image placed
    anew (it may get another suffix); one showing another object, or made another way
    than the view makes it now, is replaced where it is.
    """
    plan = Plan()
    removals, replacements = plan.removals, plan.replacements
    needs_remake = making.needs_remake
    for job_id in touched:
        for index, record in files.get(job_id, {}).items():
            key = (job_id, index)
            want = desired.get(key)
            if want is None or want.plain != record.wanted_path:
                removals.append((key, record))
            elif want.oid != record.oid or needs_remake(record, want):
                replacements.append((key, record, want))
    if not files:
        # None of these jobs has files yet: every image is new (``desired`` itself, not a copy).
        plan.placements = desired
        return plan
    removed_keys = {key for key, _ in removals}
    placements = plan.placements
    for key, want in desired.items():
        images = files.get(key[0])
        if images is None or key[1] not in images or key in removed_keys:
            placements[key] = want
    return plan


def name_groups(placements: Mapping[Key, Want]) -> tuple[dict[str, Key], dict[str, dict[Key, str]]]:
    """The new images by case-folded template path: the first image to want each name,
    and (rarely) every image of a name more than one wants, with its plain path."""
    first: dict[str, Key] = {}
    shared: dict[str, dict[Key, str]] = {}
    for key, want in placements.items():
        plain = want.plain
        folded = plain.lower() if plain.isascii() else fold(plain)
        holder = first.setdefault(folded, key)
        if holder != key:
            group = shared.get(folded)
            if group is None:
                group = shared[folded] = {holder: placements[holder].plain}
            group[key] = plain
    return first, shared


def in_batch_order(
    batch: list[tuple[str, JobEntry | None]],
    named: set[int],
    desired: dict[Key, Want],
    others: dict[int, dict[Key, Want]],
) -> dict[Key, Want]:
    """The images of jobs named in two passes, in the batch's order again (the order files
    are placed in, and names assigned in, is the same whichever way a job was named).

    ``named`` holds the positions of jobs named straight into ``desired``, ``others`` the
    files of the rest by position.
    """
    ordered: dict[Key, Want] = {}
    for position, (job_id, entry) in enumerate(batch):
        if position in others:
            ordered.update(others[position])
        elif position in named and entry is not None:
            for index in range(len(entry.images)):
                want = desired.get((job_id, index))
                if want is not None:
                    ordered[(job_id, index)] = want
    return ordered
