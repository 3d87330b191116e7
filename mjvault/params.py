"""Midjourney parameters parsed from a job's ``full_command``. Pure: no I/O.

``full_command`` is what the user typed: a prompt, then ``--name value`` pairs. Midjourney
accepts aliases (``--v``/``--version``, ``--s``/``--stylize``) and the em dash that phone
keyboards substitute for ``--``; ``--`` inside a word (``sci--fi``) is not a parameter.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# alias -> canonical name. Canonical names are what the index, filters and templates use.
ALIASES: dict[str, str] = {
    "ar": "ar",
    "aspect": "ar",
    "v": "version",
    "version": "version",
    "niji": "niji",
    "style": "style",
    "s": "stylize",
    "stylize": "stylize",
    "c": "chaos",
    "chaos": "chaos",
    "q": "quality",
    "quality": "quality",
    "tile": "tile",
    "w": "weird",
    "weird": "weird",
    "seed": "seed",
    "sameseed": "sameseed",
    "no": "no",
    "iw": "iw",
    "sref": "sref",
    "sw": "sw",
    "sv": "sv",
    "cref": "cref",
    "cw": "cw",
    "oref": "oref",
    "ow": "ow",
    "p": "personalize",
    "personalize": "personalize",
    "profile": "personalize",
    "stop": "stop",
    "r": "repeat",
    "repeat": "repeat",
    "raw": "raw",
    "draft": "draft",
    "video": "video",
    "motion": "motion",
    "loop": "loop",
    "exp": "exp",
    "hd": "hd",
    "test": "test",
    "testp": "testp",
    "creative": "creative",
    "uplight": "uplight",
    "upbeta": "upbeta",
    "upanime": "upanime",
    "relax": "relax",
    "fast": "fast",
    "turbo": "turbo",
    "public": "public",
    "stealth": "stealth",
    "h": "height",
    "height": "height",
    "width": "width",
}

INTEGER_PARAMS = frozenset(
    {"stylize", "chaos", "weird", "seed", "stop", "repeat", "sw", "cw", "ow", "exp"}
)
FLOAT_PARAMS = frozenset({"quality", "iw"})

# A parameter starts after whitespace (or at the start) with "--" or an em/en dash and a letter.
# Public: the prompt's bands (similarity/minhash.py) cut the prompt by this same rule.
PARAM_START = re.compile(r"(?:(?<=\s)|^)(?:--|\u2014|\u2013)(?=[A-Za-z])")
_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*")
ParamValue = str | int | float | bool


@dataclass(frozen=True)
class ParsedCommand:
    prompt: str
    params: dict[str, ParamValue]


def _coerce(name: str, raw: str) -> ParamValue:
    value = raw.strip().rstrip(",")
    if value == "":
        return True
    if name in INTEGER_PARAMS:
        try:
            return int(value)
        except ValueError:
            try:
                return float(value)
            except ValueError:
                return value
    if name in FLOAT_PARAMS:
        try:
            number = float(value)
        except ValueError:
            return value
        return int(number) if number.is_integer() else number
    if name == "ar":
        return value.replace(" ", "")
    return value


def parse_full_command(full_command: str | None) -> ParsedCommand:
    """Split ``full_command`` into the prompt and a canonical parameter dict.

    Unknown parameters are kept under their own lower-cased name; a repeated parameter keeps
    its last value, as Midjourney does.
    """
    text = full_command or ""
    starts = [m.start() for m in PARAM_START.finditer(text)]
    if not starts:
        return ParsedCommand(prompt=" ".join(text.split()), params={})
    prompt = " ".join(text[: starts[0]].split())
    params: dict[str, ParamValue] = {}
    bounds = starts + [len(text)]
    for begin, end in zip(bounds, bounds[1:], strict=False):
        chunk = text[begin:end]
        chunk = chunk[2:] if chunk.startswith("--") else chunk[1:]
        match = _NAME.match(chunk)
        if not match:
            continue
        raw_name = match.group(0).lower()
        name = ALIASES.get(raw_name, raw_name)
        raw_value = " ".join(chunk[match.end() :].split())
        if name == "raw":  # `--raw` is shorthand for `--style raw`
            params["style"] = "raw"
            continue
        params[name] = _coerce(name, raw_value)
    return ParsedCommand(prompt=prompt, params=params)


def param_index_value(value: ParamValue) -> str:
    """The text form a parameter value has in the index and in filters (``--ar 16:9``)."""
    if value is True:
        return "true"
    if value is False:
        return "false"
    return str(value)
