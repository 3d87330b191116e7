"""The LMDB index: a cache of the HEAD snapshot for fast lookup and search. Rebuildable."""

from mjvault.index.db import Index, JobSummary

__all__ = ["Index", "JobSummary"]
