"""Value types of settings: how each is parsed from TOML or from text, and written back.

A value reaches a setting either typed (a TOML file: ``jobs = 8``) or as text (an environment
variable, ``mjvault config set sync.jobs 8``). Files are held to their declared TOML type, so
``jobs = "8"`` is reported rather than guessed at; text is parsed. Every failure is a ValueError
whose message completes the sentence "<file>: <key>: ...".
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from mjvault.config.suggest import did_you_mean
from mjvault.errors import UsageError


class ValueType:
    """The parse/format contract every setting type follows."""

    #: Short human description, used in error messages and the configuration reference.
    description = "value"

    def parse(self, raw: object, *, from_text: bool) -> Any:
        raise NotImplementedError

    def to_toml(self, value: Any) -> Any:
        """The value as it is written into a TOML file (must parse back to the same value)."""
        return value

    def to_text(self, value: Any) -> str:
        """The value as a person would type it (``config get``, the reference's defaults)."""
        return str(value)

    def to_json(self, value: Any) -> Any:
        return self.to_toml(value)


def _type_name(raw: object) -> str:
    return {
        bool: "a boolean",
        int: "an integer",
        float: "a float",
        str: "a string",
        dict: "a table",
        list: "an array",
    }.get(type(raw), type(raw).__name__)


def _expect(raw: object, kind: type | tuple[type, ...], description: str) -> None:
    # bool is an int subclass in Python but not in TOML: `jobs = true` is a mistake.
    if isinstance(raw, bool) and kind is not bool:
        raise ValueError(f"expected {description}, got a boolean")
    if not isinstance(raw, kind):
        raise ValueError(f"expected {description}, got {_type_name(raw)}")


class Text(ValueType):
    description = "string"

    def __init__(self, *, allow_empty: bool = False) -> None:
        self.allow_empty = allow_empty

    def parse(self, raw: object, *, from_text: bool) -> str:
        _expect(raw, str, "a string")
        assert isinstance(raw, str)
        if not raw.strip() and not self.allow_empty:
            raise ValueError("must not be empty")
        return raw


class Integer(ValueType):
    def __init__(self, minimum: int, maximum: int) -> None:
        self.minimum = minimum
        self.maximum = maximum
        self.description = f"integer from {minimum} to {maximum}"

    def parse(self, raw: object, *, from_text: bool) -> int:
        if from_text and isinstance(raw, str):
            try:
                raw = int(raw.strip())
            except ValueError:
                raise ValueError(f"expected an integer, got {raw!r}") from None
        _expect(raw, int, "an integer")
        assert isinstance(raw, int)
        if not self.minimum <= raw <= self.maximum:
            raise ValueError(f"must be from {self.minimum} to {self.maximum}, not {raw}")
        return raw


class PositiveNumber(ValueType):
    description = "number greater than 0"

    def parse(self, raw: object, *, from_text: bool) -> float:
        if from_text and isinstance(raw, str):
            try:
                raw = float(raw.strip())
            except ValueError:
                raise ValueError(f"expected a number, got {raw!r}") from None
        _expect(raw, (int, float), "a number")
        assert isinstance(raw, int | float)
        if not raw > 0 or raw != raw or raw == float("inf"):
            raise ValueError(f"must be a number greater than 0, not {raw}")
        return float(raw)

    def to_text(self, value: Any) -> str:
        return f"{value:g}"


class Duration(ValueType):
    """A length of time as people write it (``30s``, ``10m``, ``6h``, ``1d``), kept as typed."""

    description = "duration: `30s`, `10m`, `6h`, `1d`"

    def parse(self, raw: object, *, from_text: bool) -> str:
        from mjvault.durations import parse_duration

        _expect(raw, str, "a duration such as 10m")
        assert isinstance(raw, str)
        try:
            seconds = parse_duration(raw)
        except UsageError as exc:
            raise ValueError(exc.message) from None
        if not seconds > 0:
            raise ValueError(f"must be longer than 0 seconds, not {raw!r}")
        return raw.strip()


class Choice(ValueType):
    def __init__(self, *options: str) -> None:
        self.options = options
        self.description = "one of " + ", ".join(f"`{o}`" for o in options)

    def parse(self, raw: object, *, from_text: bool) -> str:
        _expect(raw, str, "a string")
        assert isinstance(raw, str)
        value = raw.strip().lower()
        if value not in self.options:
            raise ValueError(
                f"{raw!r} is not one of {', '.join(self.options)}"
                + did_you_mean(value, self.options)
            )
        return value


class Url(ValueType):
    description = "http(s) URL"

    def parse(self, raw: object, *, from_text: bool) -> str:
        _expect(raw, str, "a URL string")
        assert isinstance(raw, str)
        value = raw.strip()
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"expected an http:// or https:// URL, got {raw!r}")
        if parts.query or parts.fragment:
            raise ValueError(f"a base URL has no ?query or #fragment: {raw!r}")
        return value.rstrip("/")


class Uuid(ValueType):
    description = "UUID, e.g. `48d7667d-4177-49e2-adc1-5674bdde9593`"

    def parse(self, raw: object, *, from_text: bool) -> str:
        _expect(raw, str, "a UUID string")
        assert isinstance(raw, str)
        try:
            return str(uuid.UUID(raw.strip()))
        except ValueError:
            raise ValueError(f"expected a UUID like 48d7667d-4177-…, got {raw!r}") from None


class FilePath(ValueType):
    """A path; ``~`` is expanded, and a relative path is taken from ``base`` (set per layer)."""

    description = "path (`~` expanded; relative to the file that sets it)"

    def parse(self, raw: object, *, from_text: bool) -> Path:
        _expect(raw, str, "a path string")
        assert isinstance(raw, str)
        if not raw.strip():
            raise ValueError("must not be empty")
        if "\0" in raw:
            raise ValueError("a path cannot contain a NUL character")
        try:
            return Path(raw).expanduser()
        except RuntimeError:  # `~name` of a user this machine does not know
            raise ValueError(f"cannot expand {raw.split('/')[0]!r}: no such user") from None

    def to_toml(self, value: Any) -> str:
        return str(value)


_RATE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmg]?)(?:i?b)?(?:/s)?\s*$", re.IGNORECASE)
_RATE_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}


class ByteRate(ValueType):
    """Bytes per second: an integer, or text such as ``500K``, ``2M``, ``1.5MB/s``."""

    description = "bytes per second: an integer or `500K`, `2M`, `1G`"

    def parse(self, raw: object, *, from_text: bool) -> int:
        if isinstance(raw, str):
            match = _RATE.match(raw)
            if not match:
                raise ValueError(f"expected a rate such as 500K or 2M, got {raw!r}")
            rate = int(float(match.group(1)) * _RATE_UNITS[match.group(2).lower()])
        else:
            _expect(raw, int, "an integer or a rate such as 2M")
            assert isinstance(raw, int)
            rate = raw
        if rate <= 0:
            raise ValueError("must be greater than 0 (leave it unset for no limit)")
        return rate

    def to_toml(self, value: Any) -> Any:
        return self.to_text(value)

    def to_text(self, value: Any) -> str:
        for unit in ("G", "M", "K"):
            size = _RATE_UNITS[unit.lower()]
            if value % size == 0:
                return f"{value // size}{unit}"
        return str(value)

    def to_json(self, value: Any) -> Any:
        return value


class ByteSize(ByteRate):
    """A size in bytes: an integer, or text such as ``512K``, ``16M``, ``1G``."""

    description = "bytes: an integer or `512K`, `16M`, `1G`"

    def parse(self, raw: object, *, from_text: bool) -> int:
        try:
            return super().parse(raw, from_text=from_text)
        except ValueError:
            raise ValueError(f"expected a size above 0 such as 512K or 16M, got {raw!r}") from None


class Date(ValueType):
    description = "date `YYYY-MM-DD`"

    def parse(self, raw: object, *, from_text: bool) -> dt.date:
        if isinstance(raw, dt.datetime):
            return raw.date()
        if isinstance(raw, dt.date):
            return raw
        _expect(raw, str, "a date")
        assert isinstance(raw, str)
        try:
            return dt.date.fromisoformat(raw.strip())
        except ValueError:
            raise ValueError(f"expected a date YYYY-MM-DD, got {raw!r}") from None

    def to_text(self, value: Any) -> str:
        return value.isoformat()

    def to_json(self, value: Any) -> Any:
        return value.isoformat()


_COOKIE_NAME = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")  # RFC 6265 token


def _text_pairs(text: str, form: str, *, strip: str | None) -> dict[str, object]:
    """A table written as text, ``a=1; b=2`` (empty parts skipped), its names and values
    trimmed of ``strip`` (None: any whitespace)."""
    pairs: dict[str, object] = {}
    for part in text.split(";"):
        if not part.strip():
            continue
        name, sep, value = part.partition("=")
        if not sep:
            raise ValueError(f"expected {form}, got {part.strip()!r}")
        pairs[name.strip(strip)] = value.strip(strip)
    return pairs


def _is_control(char: str) -> bool:
    return ord(char) < 0x20 or ord(char) == 0x7F


class CookieMap(ValueType):
    """Cookie name -> value; as text in the ``Cookie:`` header form ``a=1; b=2``."""

    description = "table of cookie name = value (as text: `name=value; name2=value2`)"

    def parse(self, raw: object, *, from_text: bool) -> dict[str, str]:
        if isinstance(raw, str):
            # Only spaces are trimmed: a cookie's value is kept as the header gave it.
            raw = _text_pairs(raw, "name=value; name2=value2", strip=" ")
        _expect(raw, Mapping, "a table of cookie names and values")
        assert isinstance(raw, Mapping)
        cookies: dict[str, str] = {}
        for name, value in raw.items():
            if not _COOKIE_NAME.match(str(name)):
                raise ValueError(f"{name!r} is not a valid cookie name")
            if not isinstance(value, str) or any(c == ";" or _is_control(c) for c in value):
                raise ValueError(
                    f"cookie {name!r} needs a string value without ';' or control characters"
                )
            cookies[str(name)] = value
        return cookies

    def to_toml(self, value: Any) -> Any:
        return dict(value)

    def to_text(self, value: Any) -> str:
        return "; ".join(f"{k}={v}" for k, v in value.items())


def parse_host(entry: str) -> str:
    """``host`` or ``host:port``, lower case; ValueError for anything else (a URL, a path)."""
    text = entry.strip().lower()
    problem = ValueError(f"{entry!r} is not a host name or host:port (as in cdn.midjourney.com)")
    try:
        parts = urlsplit(f"//{text}")
        _ = parts.port  # a port that is not a number raises here
    except ValueError:
        raise problem from None
    if not parts.hostname or parts.path or parts.query or parts.fragment:
        raise problem
    if "@" in text or text.endswith(":"):
        raise problem
    return text


class HostList(ValueType):
    """Host names (``host`` or ``host:port``); as text, separated by commas or spaces."""

    description = "list of host names or host:port (as text: `a.example, b.example:8443`)"

    def parse(self, raw: object, *, from_text: bool) -> tuple[str, ...]:
        if isinstance(raw, str):
            raw = [part for part in re.split(r"[,\s]+", raw) if part]
        _expect(raw, (list, tuple), "an array of host names")
        assert isinstance(raw, list | tuple)
        hosts: list[str] = []
        for entry in raw:
            if not isinstance(entry, str):
                raise ValueError(f"expected host names as strings, got {_type_name(entry)}")
            hosts.append(parse_host(entry))
        return tuple(hosts)

    def to_toml(self, value: Any) -> Any:
        return list(value)

    def to_text(self, value: Any) -> str:
        return ", ".join(value)


class NumberTable(ValueType):
    """Name -> number, a TOML table whose sub-tables name their entries by dotted path
    (``[insights.cost.minutes] grid = 1`` is ``minutes.grid``); as text ``a.b=1; c=2``."""

    description = "table of name = number (0 or more); as text `name=1; other.name=2`"

    def parse(self, raw: object, *, from_text: bool) -> dict[str, float]:
        if isinstance(raw, str):
            raw = _text_pairs(raw, "name=number; name2=number", strip=None)
        _expect(raw, Mapping, "a table of names and numbers")
        assert isinstance(raw, Mapping)
        table: dict[str, float] = {}
        self._flatten(raw, "", table)
        return table

    def _flatten(self, raw: Mapping[Any, Any], prefix: str, into: dict[str, float]) -> None:
        for name, value in raw.items():
            key = f"{prefix}{name}"
            if isinstance(value, Mapping):
                self._flatten(value, key + ".", into)
                continue
            if isinstance(value, str):
                try:
                    value = float(value)
                except ValueError:
                    raise ValueError(f"{key}: expected a number, got {value!r}") from None
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"{key}: expected a number, got {_type_name(value)}")
            if not 0 <= value < float("inf"):
                raise ValueError(f"{key}: must be a number of 0 or more, not {value}")
            into[key] = float(value)

    def to_toml(self, value: Any) -> Any:
        return dict(value)

    def to_text(self, value: Any) -> str:
        return "; ".join(f"{k}={v:g}" for k, v in value.items())


class Boolean(ValueType):
    """``true``/``false`` in TOML; as text also ``yes``/``no``, ``on``/``off``, ``1``/``0``."""

    description = "boolean (`true` or `false`)"
    _TEXT = {"true": True, "yes": True, "on": True, "1": True}
    _TEXT |= {"false": False, "no": False, "off": False, "0": False}

    def parse(self, raw: object, *, from_text: bool) -> bool:
        if from_text and isinstance(raw, str):
            value = self._TEXT.get(raw.strip().lower())
            if value is None:
                raise ValueError(f"expected true or false, got {raw!r}")
            return value
        _expect(raw, bool, "true or false")
        assert isinstance(raw, bool)
        return raw

    def to_text(self, value: Any) -> str:
        return "true" if value else "false"


# A URL's scheme, as it starts an entry of a list of URLs written as text.
_URL_START = re.compile(r"^[a-z][a-z0-9+.-]*://", re.IGNORECASE)


class UrlList(ValueType):
    """URLs of any scheme (``json://…``, ``mailto://…``); as text, separated by spaces or
    newlines, or by commas that come right before the next ``scheme://``. A comma inside a
    URL (``mailto://…?to=a@x,b@y``) stays part of it."""

    description = "list of URLs (as text: separated by spaces)"

    def parse(self, raw: object, *, from_text: bool) -> tuple[str, ...]:
        if isinstance(raw, str):
            raw = [p for p in re.split(r"\s+|,\s*(?=[a-z][a-z0-9+.-]*://)", raw, flags=re.I) if p]
        _expect(raw, (list, tuple), "an array of URLs")
        assert isinstance(raw, list | tuple)
        urls: list[str] = []
        for entry in raw:
            if not isinstance(entry, str):
                raise ValueError(f"expected URLs as strings, got {_type_name(entry)}")
            text = entry.strip()
            if not _URL_START.match(text) or any(c.isspace() for c in text):
                # Never the entry itself: it may carry a token.
                raise ValueError(f"entry {len(urls) + 1} is not a URL of the form scheme://…")
            urls.append(text)
        return tuple(urls)

    def to_toml(self, value: Any) -> Any:
        return list(value)

    def to_text(self, value: Any) -> str:
        return " ".join(value)


_CLOCK = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)$")


def parse_clock_range(text: str) -> tuple[dt.time, dt.time]:
    """``22:00-07:00`` as two times of day; ValueError for anything else or an empty range."""
    start_text, sep, end_text = text.strip().partition("-")
    ends = [_CLOCK.match(part.strip()) for part in (start_text, end_text)]
    if not sep or not ends[0] or not ends[1]:
        raise ValueError(f"expected a range of times such as 22:00-07:00, got {text!r}")
    start, end = (dt.time(int(m.group(1)), int(m.group(2))) for m in ends if m)
    if start == end:
        raise ValueError(f"the range {text!r} starts where it ends")
    return start, end


class ClockRange(ValueType):
    """A daily range of local times, ``HH:MM-HH:MM``; it may pass midnight (``22:00-07:00``)."""

    description = "range of times of day `HH:MM-HH:MM` (may pass midnight)"

    def parse(self, raw: object, *, from_text: bool) -> str:
        _expect(raw, str, "a string such as 22:00-07:00")
        assert isinstance(raw, str)
        start, end = parse_clock_range(raw)
        return f"{start:%H:%M}-{end:%H:%M}"
