"""Did-you-mean suggestions for misspelt keys, sections, profiles and choices."""

from __future__ import annotations

from collections.abc import Iterable


def closest(word: str, candidates: Iterable[str], cutoff: float = 0.6) -> str | None:
    import difflib  # asked only on the way to an error, not by every command's start-up

    matches = difflib.get_close_matches(word, list(candidates), n=1, cutoff=cutoff)
    return matches[0] if matches else None


def did_you_mean(word: str, candidates: Iterable[str]) -> str:
    """`` (did you mean X?)`` or the empty string: ready to append to a message."""
    match = closest(word, candidates)
    return f" (did you mean {match}?)" if match else ""
