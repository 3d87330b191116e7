"""The search language, parsed into a :class:`Query`. Pure: no I/O.

    fox "misty forest" -snow cat* type:upscale ar:16:9 v:6 s>100 since:2024-03 user:name

* ``word`` — every word must be in the prompt (case-folded, NFKC-normalised and without
  accents, so ``FOX``, ``Ｆｏｘ`` match ``fox`` and ``cafe`` matches ``café``); a word the tokenizer splits (``sci-fi``, ``猫耳``)
  must appear as that sequence.
* ``"quoted phrase"`` — the words in this order, next to each other.
* ``word*`` — any word starting with ``word``.
* ``-term`` — exclude jobs matching the term, phrase or filter.
* ``type:T``, ``user:NAME``, and any Midjourney parameter by name or alias (``ar:16:9``,
  ``v:6``, ``niji:6``, ``style:raw``, ``chaos:50``): equality. ``v:6`` also matches ``6.1``.
* ``s>100``, ``chaos<=20``, ``ar>1`` — numeric comparisons (``ar`` compares width/height).
* ``--ar 16:9``, ``--v 6``, ``--tile``: parameters as typed in Midjourney are filters too.
* ``since:DATE``, ``until:DATE``, ``date:DATE`` with ``DATE`` a year, ``YYYY-MM``, a day or an
  ISO date-time; ``until`` includes the whole year, month or day it names.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from mjvault.errors import UsageError
from mjvault.params import ALIASES
from mjvault.text import normalize, search_tokens


class QueryError(UsageError):
    """A search query that cannot be understood (a bad date, a non-number in a comparison)."""


DATE_FIELDS = ("since", "until", "date")
PLAIN_FIELDS = ("type", "user")
# Parameters whose values are versions: "6" also means "6.1", "6.0".
VERSIONED_PARAMS = frozenset({"version", "niji"})
FIELD_PATTERN = re.compile(r"([A-Za-z_]+)(<=|>=|<|>|=|:)(.*)\Z", re.DOTALL)


@dataclass(frozen=True)
class Term:
    """A word (one token), a phrase (several tokens in sequence), or a prefix (last token)."""

    tokens: tuple[str, ...]
    prefix: bool = False
    negated: bool = False

    @property
    def is_phrase(self) -> bool:
        return len(self.tokens) > 1


@dataclass(frozen=True)
class FieldFilter:
    """``field op value``: field is "type", "user" or a canonical parameter name."""

    field: str
    op: str
    value: str
    negated: bool = False


@dataclass(frozen=True)
class Query:
    terms: tuple[Term, ...] = ()
    filters: tuple[FieldFilter, ...] = ()
    since: datetime | None = None  # inclusive
    until: datetime | None = None  # inclusive
    text: str = field(default="", compare=False)
    # Words that have no searchable characters (emoji, punctuation): not indexed, so ignored.
    unsearchable: tuple[str, ...] = field(default=(), compare=False)

    @property
    def empty(self) -> bool:
        return not (self.terms or self.filters or self.since or self.until)

    def positive_words(self) -> list[str]:
        """The words relevance ranking scores (prefixes and negated terms excluded)."""
        words: list[str] = []
        for term in self.terms:
            if term.negated:
                continue
            tokens = term.tokens[:-1] if term.prefix else term.tokens
            words.extend(t for t in tokens if t not in words)
        return words

    def to_text(self) -> str:
        """A query string that parses back to this query."""
        parts: list[str] = []
        for term in self.terms:
            neg = "-" if term.negated else ""
            if term.prefix:
                parts.append(neg + "-".join(term.tokens) + "*")
            elif term.is_phrase:
                parts.append(f'{neg}"{" ".join(term.tokens)}"')
            else:
                parts.append(neg + term.tokens[0])
        for f in self.filters:
            neg = "-" if f.negated else ""
            op = ":" if f.op == "=" else f.op
            value = f'"{f.value}"' if _needs_quotes(f.value) else f.value
            parts.append(f"{neg}{f.field}{op}{value}")
        if self.since is not None:
            parts.append(f"since:{_format_moment(self.since)}")
        if self.until is not None:
            parts.append(f"until:{_format_moment(self.until)}")
        return " ".join(parts)


def _needs_quotes(value: str) -> bool:
    return value == "" or any(c.isspace() or c == '"' for c in value)


def _format_moment(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")


# -- scanning ------------------------------------------------------------------------------
def _split(text: str) -> list[tuple[bool, str, bool]]:
    """(negated, raw, quoted) chunks: whitespace separates, double quotes group."""
    chunks: list[tuple[bool, str, bool]] = []
    i, n = 0, len(text)
    while i < n:
        if text[i].isspace():
            i += 1
            continue
        negated = False
        if text[i] == "-" and i + 1 < n and not text[i + 1].isspace():
            negated = True
            i += 1
        if text[i] == '"':
            end = text.find('"', i + 1)
            end = n if end < 0 else end
            chunks.append((negated, text[i + 1 : end], True))
            i = end + 1
            continue
        start = i
        while i < n and not text[i].isspace():
            if text[i] == '"' and i > start and text[i - 1] in ":<>=":
                # field:"value with spaces"
                end = text.find('"', i + 1)
                end = n if end < 0 else end
                raw = text[start:i] + text[i + 1 : end]
                i = end + 1
                break
            i += 1
        else:
            raw = text[start:i]
        chunks.append((negated, raw, False))
    return chunks


def parse_query(text: str) -> Query:
    """Parse a search query; raises :class:`QueryError` for what cannot mean anything."""
    terms: list[Term] = []
    filters: list[FieldFilter] = []
    since: datetime | None = None
    until: datetime | None = None
    unsearchable: list[str] = []
    chunks = _split(text)
    position = 0
    while position < len(chunks):
        negated, raw, quoted = chunks[position]
        position += 1
        pasted = _pasted_parameter(negated, raw, quoted)
        if pasted == "raw":  # --raw is --style raw
            filters.append(FieldFilter("style", "=", "raw"))
            continue
        if pasted is not None:
            # "--ar 16:9" as Midjourney takes it: the next chunk is the value, unless it is
            # another parameter (then this one is a flag such as --tile).
            following = chunks[position] if position < len(chunks) else None
            if following is not None and not following[0] and not following[2]:
                value, position = following[1], position + 1
            else:
                value = "true"
            filters.append(_field_filter(pasted, "=", value, False, f"--{pasted} {value}"))
            continue
        if quoted:
            tokens = tuple(search_tokens(raw))
            if tokens:
                terms.append(Term(tokens, negated=negated))
            elif raw.strip():
                unsearchable.append(raw)
            continue
        match = FIELD_PATTERN.match(raw)
        name = match.group(1).lower() if match else ""
        if match and (name in DATE_FIELDS or name in PLAIN_FIELDS or name in ALIASES):
            op, value = match.group(2), match.group(3)
            op = "=" if op == ":" else op
            if name in DATE_FIELDS:
                if negated or op != "=":
                    raise QueryError(f"{raw!r}: write dates as since:DATE or until:DATE")
                low, high = parse_date_bound(value)
                if name in ("since", "date"):
                    since = low if since is None else max(since, low)
                if name in ("until", "date"):
                    until = high if until is None else min(until, high)
                continue
            filters.append(_field_filter(name, op, value, negated, raw))
            continue
        prefix = raw.endswith("*")
        tokens = tuple(search_tokens(raw.rstrip("*") if prefix else raw))
        if tokens:
            is_prefix = prefix and raw.rstrip("*")[-1:].isalnum()
            terms.append(Term(tokens, prefix=is_prefix, negated=negated))
        else:
            unsearchable.append(raw)
    return Query(tuple(terms), tuple(filters), since, until, text, tuple(unsearchable))


def _pasted_parameter(negated: bool, raw: str, quoted: bool) -> str | None:
    """The alias in ``--name`` (split as "-" and "-name"), when it is a Midjourney parameter."""
    if quoted or not negated or not raw.startswith("-"):
        return None
    name = raw[1:].lower()
    return name if name in ALIASES else None


def _field_filter(name: str, op: str, value: str, negated: bool, raw: str) -> FieldFilter:
    if value == "":
        raise QueryError(f"{raw!r} has no value")
    if name == "type":
        if op != "=":
            raise QueryError(f"{raw!r}: type can only be compared with ':'")
        return FieldFilter("type", "=", normalize(value), negated)
    if name == "user":
        if op != "=":
            raise QueryError(f"{raw!r}: user can only be compared with ':'")
        return FieldFilter("user", "=", value, negated)
    canonical = ALIASES[name]
    if canonical == "ar":
        value = value.replace(" ", "")
    if op != "=" and param_number(canonical, value) is None:
        raise QueryError(f"{raw!r}: {value!r} is not a number to compare with")
    if canonical == "style" or canonical == "personalize":
        value = value.lower()
    return FieldFilter(canonical, op, value, negated)


def param_number(name: str, value: str) -> float | None:
    """The numeric meaning of a parameter value: numbers as such, ``ar`` W:H as W/H."""
    try:
        if name == "ar" and ":" in value:
            width, height = value.split(":", 1)
            return float(width) / float(height)
        return float(value)
    except (ValueError, ZeroDivisionError):
        return None


def compare(op: str, left: float, right: float) -> bool:
    if op == "<":
        return left < right
    if op == "<=":
        return left <= right
    if op == ">":
        return left > right
    if op == ">=":
        return left >= right
    return left == right


_DATE = re.compile(r"(\d{4})(?:-(\d{1,2})(?:-(\d{1,2}))?)?\Z")


def parse_date_bound(value: str) -> tuple[datetime, datetime]:
    """The first and last microsecond (UTC) a date names: a year, a month, a day or an instant."""
    match = _DATE.match(value.strip())
    try:
        if match:
            year = int(match.group(1))
            month = int(match.group(2) or 1)
            day = int(match.group(3) or 1)
            low = datetime(year, month, day, tzinfo=UTC)
            if match.group(3):
                high = low + timedelta(days=1)
            elif match.group(2):
                high = datetime(year + month // 12, month % 12 + 1, 1, tzinfo=UTC)
            else:
                high = datetime(year + 1, 1, 1, tzinfo=UTC)
            return low, high - timedelta(microseconds=1)
        moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except (ValueError, OverflowError):
        raise QueryError(
            f"{value!r} is not a date", hint="use YYYY, YYYY-MM, YYYY-MM-DD or an ISO date-time"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    moment = moment.astimezone(UTC)
    return moment, moment
