"""Which jobs a view holds: type, date range, prompt words, parameter values, and the
members of a collection. Pure.

A filter is stored with its view as plain data (:meth:`ViewFilter.to_json`) so a refresh
years later selects by the same rules. A collection is named, not listed: the refresh reads
its members from the snapshot it renders and binds them (:meth:`ViewFilter.bound`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from mjvault.errors import UsageError
from mjvault.model import Job
from mjvault.params import ALIASES, param_index_value
from mjvault.text import tokenize


@dataclass(frozen=True)
class ViewFilter:
    """All given conditions must hold (AND); an empty filter selects every job."""

    types: tuple[str, ...] = ()
    since: datetime | None = None
    until: datetime | None = None  # exclusive
    search: str | None = None
    params: tuple[tuple[str, str], ...] = ()
    collection: str | None = None  # the name of a collection of the rendered snapshot
    _phrases: tuple[tuple[str, ...], ...] = field(default=(), compare=False, repr=False)
    # The collection's job ids, bound by the refresh that renders the view.
    members: frozenset[str] | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        # Each query word must appear as a run of prompt tokens: a Latin word is one token,
        # while 猫耳 is two characters that must stand next to each other.
        phrases = tuple(tuple(tokenize(word)) for word in (self.search or "").split())
        object.__setattr__(self, "_phrases", tuple(p for p in phrases if p))

    @property
    def empty(self) -> bool:
        return not (
            self.types
            or self.since
            or self.until
            or self._phrases
            or self.params
            or self.collection is not None
        )

    def bound(self, members: frozenset[str]) -> ViewFilter:
        """This filter with its collection's members (the refresh's, for one snapshot)."""
        return dataclasses.replace(self, members=members)

    def matches(self, job: Job) -> bool:
        if self.collection is not None:
            if self.members is None:
                raise RuntimeError("a collection filter is matched only once bound")
            if job.id not in self.members:
                return False
        if self.types and not _type_matches(job, self.types):
            return False
        if self.since is not None or self.until is not None:
            moment = job.enqueue_time
            if moment is None:
                return False
            if self.since is not None and moment < self.since:
                return False
            if self.until is not None and moment >= self.until:
                return False
        if self._phrases and not _contains_phrases(tokenize(job.prompt), self._phrases):
            return False
        return all(_param_matches(job, name, wanted) for name, wanted in self.params)

    def to_json(self) -> dict[str, Any]:
        # Not a report but the view's stored definition, hashed for its fingerprint: no
        # collection key at all without one, so older views keep their fingerprints.
        return {
            "types": list(self.types),
            "since": self.since.isoformat() if self.since else None,
            "until": self.until.isoformat() if self.until else None,
            "search": self.search,
            "params": [list(p) for p in self.params],
        } | ({"collection": self.collection} if self.collection is not None else {})
        # (absent rather than null without one: a view's fingerprint, a hash of this, stays
        # what it was before collections, so no view is rendered again for it)

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> ViewFilter:
        return cls(
            types=tuple(doc.get("types") or ()),
            since=datetime.fromisoformat(doc["since"]) if doc.get("since") else None,
            until=datetime.fromisoformat(doc["until"]) if doc.get("until") else None,
            search=doc.get("search"),
            params=tuple((str(n), str(v)) for n, v in doc.get("params") or ()),
            collection=str(doc["collection"]) if doc.get("collection") is not None else None,
        )

    @classmethod
    def build(
        cls,
        *,
        types: tuple[str, ...] = (),
        since: str | None = None,
        until: str | None = None,
        search: str | None = None,
        params: dict[str, str] | None = None,
    ) -> ViewFilter:
        """From command-line text; bad dates are a :class:`UsageError`."""
        start = parse_bound(since, "--since", end=False) if since else None
        end = parse_bound(until, "--until", end=True) if until else None
        if start and end and start >= end:
            raise UsageError(f"--since {since} is not before --until {until}")
        pairs = tuple(
            sorted(
                (ALIASES.get(n.lower(), n.lower()), _normalise_param(n, v))
                for n, v in (params or {}).items()
                if v is not None
            )
        )
        return cls(
            types=tuple(sorted(t.lower() for t in types)),
            since=start,
            until=end,
            search=" ".join(search.split()) if search and search.strip() else None,
            params=pairs,
        )


def parse_bound(text: str, option: str, *, end: bool) -> datetime:
    """``2024-03-05`` or an ISO time. A bare ``--until`` date includes that whole day."""
    try:
        if len(text) == 10:
            day = date.fromisoformat(text)
            moment = datetime(day.year, day.month, day.day, tzinfo=UTC)
            return moment + timedelta(days=1) if end else moment
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(f"{option} {text!r} is not a date like 2024-03-05") from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _normalise_param(name: str, value: str) -> str:
    value = value.strip()
    return value.replace(" ", "") if ALIASES.get(name.lower()) == "ar" else value


def _type_matches(job: Job, wanted: tuple[str, ...]) -> bool:
    kinds = {(job.type or "").lower(), (job.job_type or "").lower(), (job.event_type or "").lower()}
    kinds.add("video" if job.is_video else "image")
    return any(w in kinds for w in wanted)


def _param_matches(job: Job, name: str, wanted: str) -> bool:
    value = job.params.get(name)
    if value is None:
        return False
    text = param_index_value(value)
    if text.lower() == wanted.lower():
        return True
    # --version 6 also selects 6.1: a major version names its point releases.
    return name in ("version", "niji") and text.startswith(wanted + ".")


def _contains_phrases(tokens: list[str], phrases: tuple[tuple[str, ...], ...]) -> bool:
    present = set(tokens)
    for phrase in phrases:
        if not all(t in present for t in phrase):
            return False
        if len(phrase) > 1 and not _has_run(tokens, phrase):
            return False
    return True


def _has_run(tokens: list[str], phrase: tuple[str, ...]) -> bool:
    width = len(phrase)
    first = phrase[0]
    return any(
        tokens[i] == first and tuple(tokens[i : i + width]) == phrase
        for i in range(len(tokens) - width + 1)
    )
