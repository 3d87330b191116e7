"""What a checkout, refresh or removal of views did: the reports they return."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from mjvault.reports import Report

MAX_LISTED = 50  # paths listed in a report; counts are always complete


@dataclass
class RefreshReport(Report):
    view: str
    directory: str
    snapshot: str | None
    mode: str = "incremental"  # "incremental" | "full" | "up-to-date" | "removed"
    link: str = ""
    jobs_examined: int = 0
    added: int = 0
    removed: int = 0
    updated: int = 0
    unchanged: int = 0
    skipped: int = 0
    conflicts: int = 0
    kept: int = 0
    adopted: int = 0  # files an interrupted run made and could not record, taken as the view's
    conflict_paths: list[str] = field(default_factory=list)
    kept_paths: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def note(self, message: str) -> None:
        if message not in self.notes and len(self.notes) < MAX_LISTED:
            self.notes.append(message)


@dataclass
class ViewsReport(Report):
    """The outcome of refreshing several views (``mjvault checkout`` with no arguments)."""

    views: list[RefreshReport] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)

    def totals(self) -> dict[str, int]:
        names = (
            "added", "removed", "updated", "unchanged", "skipped", "conflicts", "kept", "adopted"
        )  # fmt: skip
        return {n: sum(getattr(r, n) for r in self.views) for n in names}

    def to_json(self) -> dict[str, Any]:
        # Its own shape: the totals are computed, and `totals()` stays a method (docs/usage.md's
        # Python API calls it), which `json_after` cannot name.
        return {
            "views": [r.to_json() for r in self.views],
            "errors": self.errors,
            "totals": self.totals(),
        }
