"""One problem a check found: the shape `mjvault verify` reports, whichever check found it.

Below the checks (the object and structure passes of :mod:`mjvault.integrity.verify`, the view
files of :mod:`mjvault.integrity.viewcheck`, a remote's of :mod:`mjvault.remotes.verify`) so
that each imports it without importing another.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mjvault.reports import Report, json_meta


@dataclass
class Problem(Report):
    kind: str  # missing | corrupt | malformed | ref | index | view
    message: str
    object_id: str | None = field(default=None, metadata=json_meta(name="object"))
    jobs: list[str] = field(default_factory=list)
    snapshots: list[str] = field(default_factory=list)
    # The pack whose bytes are damaged: with no object_id, the pack as a whole (its trailer
    # or its name); with one, that object's entry in it.
    pack: str | None = None
