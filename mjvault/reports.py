"""One JSON shape for every report a command prints with ``--json``.

A report is a dataclass that mixes in :class:`Report`; its :meth:`Report.to_json` derives the
JSON object from the fields, by one convention:

* one key per field, named as the field, in field order;
* a field's ``metadata`` may rename it (``json_meta(name="object")``), leave it out
  (``json_meta(omit=True)``) or round a float (``json_meta(digits=2)``); a float field named
  ``seconds`` is rounded to 3 decimals (a duration: milliseconds are all a reader needs);
* properties named in the class's ``json_before`` / ``json_after`` come first / last (``ok``,
  say, which a script reads first);
* values: a nested object with ``to_json`` gives its ``to_json()``, a nested plain dataclass its
  fields by the same rules, an enum its value, a datetime ISO 8601 (``isoformat()``), a path
  its text, a set or frozenset a sorted list, a tuple a list; lists and dicts are converted
  item by item; anything else is kept as it is.

A class whose shape cannot be derived (keys computed from several fields, keys present only
sometimes, a persisted document with a version first) keeps its own ``to_json``, with a comment
saying why. This module sits at the bottom of the package: it imports nothing of mjvault.
"""

from __future__ import annotations

import dataclasses
import enum
import os
from collections.abc import Mapping
from datetime import date, datetime
from pathlib import PurePath
from typing import Any, ClassVar

#: The ``field(metadata=...)`` keys this module reads.
JSON_NAME = "json_name"
JSON_OMIT = "json_omit"
JSON_DIGITS = "json_digits"

#: Decimals a float field named ``seconds`` keeps.
SECONDS_DIGITS = 3


def json_meta(
    *, name: str | None = None, omit: bool = False, digits: int | None = None
) -> dict[str, Any]:
    """The ``metadata`` of a field whose JSON differs from the plain convention."""
    meta: dict[str, Any] = {}
    if name is not None:
        meta[JSON_NAME] = name
    if omit:
        meta[JSON_OMIT] = True
    if digits is not None:
        meta[JSON_DIGITS] = digits
    return meta


class Report:
    """Mixin for dataclasses whose JSON is derived from their fields (see the module text)."""

    #: Properties given before the fields, in this order.
    json_before: ClassVar[tuple[str, ...]] = ()
    #: Properties given after the fields, in this order.
    json_after: ClassVar[tuple[str, ...]] = ()

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            name: to_json_value(getattr(self, name)) for name in self.json_before
        }
        out.update(_fields_json(self))
        for name in self.json_after:
            out[name] = to_json_value(getattr(self, name))
        return out


def _fields_json(obj: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in dataclasses.fields(obj):
        meta = f.metadata
        if meta.get(JSON_OMIT):
            continue
        value = getattr(obj, f.name)
        digits = meta.get(JSON_DIGITS)
        if digits is None and f.name == "seconds":
            digits = SECONDS_DIGITS
        if digits is not None and isinstance(value, float):
            out[meta.get(JSON_NAME, f.name)] = round(value, digits)
        else:
            out[meta.get(JSON_NAME, f.name)] = to_json_value(value)
    return out


def to_json_value(value: Any) -> Any:
    """``value`` as JSON-ready data, by the convention of this module."""
    if isinstance(value, enum.Enum):
        return value.value
    if value is None or isinstance(value, str | bool | int | float):
        return value
    to_json = getattr(value, "to_json", None)
    if callable(to_json) and not isinstance(value, type):
        return to_json()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _fields_json(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, PurePath):
        return os.fspath(value)
    if isinstance(value, set | frozenset):
        return sorted(to_json_value(v) for v in value)
    if isinstance(value, list | tuple):
        return [to_json_value(v) for v in value]
    if isinstance(value, Mapping):
        return {k: to_json_value(v) for k, v in value.items()}
    return value
