"""One file a view created, and a view's files by job: the rows the view's state holds
(:mod:`mjvault.views.registry`) and its file list stores (:mod:`mjvault.views.state`),
below both so neither imports the other for them."""

from __future__ import annotations

from typing import Any, NamedTuple

from mjvault.views.links import LinkKind

_KINDS = {kind.value: kind for kind in LinkKind}


class FileRecord(NamedTuple):
    """One file a view created: where, showing which object, made how.

    ``plain`` is the path the template gave before collisions were resolved (None when it is
    ``path`` itself); ``size``/``mtime_ns`` fingerprint a copy, so a copy the user has since
    edited is recognised as theirs and never removed. A named tuple: a view holds 100k of
    them, and a frozen dataclass is several times slower to build.
    """

    path: str
    oid: str
    kind: LinkKind
    plain: str | None = None
    size: int = 0
    mtime_ns: int = 0

    @property
    def wanted_path(self) -> str:
        return self.plain if self.plain is not None else self.path

    def pack(self, job_id: str, index: int) -> list[Any]:
        # str(kind), not kind.value: an Enum property costs more than the rest of the row.
        kind = str.__str__(self.kind)
        return [job_id, index, self.path, self.oid, kind, self.plain, self.size, self.mtime_ns]

    @staticmethod
    def unpack(row: list[Any]) -> tuple[str, int, FileRecord]:
        job_id, index, path, oid, kind, plain, size, mtime_ns = row
        try:
            link = _KINDS[kind]  # a dict lookup: LinkKind(kind) is slow for 100k rows
        except KeyError:
            raise ValueError(f"unknown link kind {kind!r}") from None
        return job_id, index, FileRecord(path, oid, link, plain, size, mtime_ns)


JobFiles = dict[str, dict[int, FileRecord]]
