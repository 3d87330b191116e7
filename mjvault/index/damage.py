"""The index's damage error, below the modules that raise it (:mod:`mjvault.index.db` and
the sealed values it reads through :mod:`mjvault.index.sealed`)."""

from __future__ import annotations

from mjvault.errors import IntegrityError

REBUILD_HINT = "the index is only a cache of the snapshots: rebuild it with `mjvault index rebuild`"


class IndexDamaged(IntegrityError):
    """The LMDB files are not a valid environment: safe to discard, it is only a cache."""

    def __init__(self, message: str, *, hint: str | None = REBUILD_HINT) -> None:
        super().__init__(message, hint=hint)
