"""Durations as people write them on a command line or in config: ``90s``, ``30m``, ``6h``,
``2d``, ``1w``, ``1h30m`` (gc's grace, a remote's prune wait, a watch's or schedule's
interval)."""

from __future__ import annotations

import re

from mjvault.errors import UsageError

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_duration(text: str) -> float:
    """``90s``, ``30m``, ``1h``, ``2d``, ``1w``, ``1h30m`` or a bare number of seconds."""
    spec = text.strip().lower()
    if re.fullmatch(r"\d+(\.\d+)?", spec):
        return float(spec)
    parts = re.findall(r"(\d+(?:\.\d+)?)([smhdw])", spec)
    if not parts or "".join(n + u for n, u in parts) != spec:
        raise UsageError(f"cannot read the duration {text!r} (examples: 90s, 30m, 1h, 2d)")
    return sum(float(n) * _UNITS[u] for n, u in parts)


def parse_bounded(text: str, *, minimum: float, maximum: float, refusal: str) -> float:
    """A duration between ``minimum`` and ``maximum`` seconds; ``refusal`` is the one line
    otherwise. Intervals need both bounds: a wait of 110000 days overflows the platform's
    timeout, and a wait of a millisecond turns a loop into a busy spin."""
    seconds = parse_duration(text)
    if not minimum <= seconds <= maximum:
        raise UsageError(refusal)
    return seconds
