"""View path templates: ``{date:%Y/%Y-%m}/{prompt:60}_{job_id}_{index}.{ext}``. Pure.

A template is parsed once, when a view is defined, so an unknown field or a stray brace is a
one-line :class:`UsageError` then and never a surprise half-way through a checkout of 100k
images. Rendering gives a *raw* relative path: only the template's own literal text (and the
``/`` inside a ``{date:...}`` format) makes directories; every other field value has its
separators replaced, so a prompt like ``cats/dogs`` cannot invent a directory. Making the
result safe for real file systems is :mod:`mjvault.views.paths`' job.

Fields (see ``docs/usage.md``):

``{job_id}`` / ``{job_id:N}``   the job id (its first N characters)
``{index}``                     image number within the job, from 0
``{ext}``                       file extension without the dot (``png``, ``webp``, ``mp4``)
``{type}``, ``{job_type}``      the job's type and job type as Midjourney reports them
``{date}`` / ``{date:FMT}``     enqueue time (UTC) through ``strftime`` (default ``%Y-%m-%d``);
                                a job without a time renders ``unknown-date``
``{prompt}`` / ``{prompt:N}``   the prompt, URLs dropped, made safe and cut to N characters
                                (default 60); an empty prompt renders ``untitled``
``{username}``                  the author; ``unknown-user`` when the record has none
``{width}``, ``{height}``       pixel size when known, else ``none``
``{ar}``, ``{version}``, ``{niji}``, ``{style}``, ``{stylize}``, ``{chaos}``, ``{quality}``,
``{weird}``, ``{seed}`` … every parameter name mjvault knows (and its aliases, ``{v}``, ``{s}``)
``{param:NAME}``                any other parameter by its name, as typed after ``--``

A missing parameter renders ``none``; ``{style:default}`` renders ``default`` instead. Flag
parameters (``--tile``) render ``true``. ``{ar}`` renders ``16x9``: ``:`` is not allowed in file
names on Windows or macOS. Literal braces are written ``{{`` and ``}}``.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from mjvault.errors import UsageError
from mjvault.model import Job
from mjvault.params import ALIASES, param_index_value
from mjvault.views.paths import index_is_inert

DEFAULT_TEMPLATE = "{date:%Y/%Y-%m}/{prompt:60}_{job_id}_{index}.{ext}"
DEFAULT_DATE_FORMAT = "%Y-%m-%d"
DEFAULT_PROMPT_LENGTH = 60
MAX_PROMPT_LENGTH = 255
# Deeper templates cannot be shortened to fit a path limit; nobody browses 32 levels deep.
MAX_DEPTH = 32
MISSING = "none"
UNKNOWN_DATE = "unknown-date"
UNKNOWN_USER = "unknown-user"
UNTITLED = "untitled"

_FIELD_NAME = re.compile(r"[a-z_][a-z0-9_]*\Z")
_URL = re.compile(r"<?\b[a-z][a-z0-9+.-]*://\S*", re.IGNORECASE)
# Characters that may not appear in a file name on one of Linux, macOS and Windows.
_UNSAFE_IN_NAME = re.compile(r'[\x00-\x1f\x7f-\x9f<>:"/\\|?*]')
# The same but '/': a date format's own separators make directories.
_UNSAFE_IN_DATE = re.compile(r'[\x00-\x1f\x7f-\x9f<>:"\\|?*]')
_SEPARATORS = re.compile(r"[/\\]")
_SAMPLE_TIME = datetime(2024, 2, 29, 13, 45, 30, tzinfo=UTC)
# strftime directives Python documents plus the C99 ones every platform has. Anything else
# (%Q, %E alone, %:z before 3.12) is copied literally by one C library and refused by another;
# %n and %t would put a newline or tab in a file name.
STRFTIME_DIRECTIVES = frozenset("aAbBcCdDeFgGhHIjmMpRSTuUVwWxXyYzZf%")
# glibc and BSD pad flags (%-d: no padding); only before a directive.
_STRFTIME_FLAGS = "-_0^#"
_DIRECTIVE = re.compile(r"%([" + re.escape(_STRFTIME_FLAGS) + r"]?)(.?)", re.DOTALL)

# The parameters with a field of their own: every canonical name and alias mjvault parses.
PARAMETER_FIELDS: dict[str, str] = dict(ALIASES)
_TEXT_FIELDS = ("username", "job_type", "width", "height")
_PLAIN_FIELDS = ("index", "ext", "type")
_PER_IMAGE = frozenset({"index", "ext"})
_INDEX_MARK = "\x00"  # where index_split finds the index: str.format passes it, no field has it


@dataclass(frozen=True)
class Field:
    """One ``{name:arg}`` in a template; ``arg`` is None when no ``:`` was written."""

    name: str
    arg: str | None


Segment = str | Field


@dataclass(frozen=True)
class Template:
    """A parsed template. ``text`` is what the user wrote and what the view registry stores."""

    text: str
    segments: tuple[Segment, ...]

    @classmethod
    def parse(cls, text: str) -> Template:
        segments = tuple(_parse_segments(text))
        if not any(isinstance(s, Field) for s in segments):
            raise UsageError(
                f"template {text!r} has no fields, so every image would get the same name",
                hint="use fields such as {job_id} and {index}",
            )
        for segment in segments:
            if isinstance(segment, Field):
                _check_field(segment)
        depth = sum(_literal_separators(s) for s in segments) + 1
        if depth > MAX_DEPTH:
            raise UsageError(f"template {text!r} is {depth} directories deep (at most {MAX_DEPTH})")
        return cls(text=text, segments=segments)

    @functools.cached_property
    def index_once(self) -> bool:
        """Does ``{index}`` appear exactly once (so a job's images differ in one place)?"""
        return sum(1 for s in self.segments if isinstance(s, Field) and s.name == "index") == 1

    def index_split(self, form: str, ext: str) -> tuple[str, str] | None:
        """``(head, tail)`` such that image ``i``'s safe path (:func:`safe_relpath` of its
        raw path) is ``head + str(i) + tail`` for every ``i`` below ``10 ** INDEX_DIGITS``;
        None when the index can change more than that. ``form`` is :meth:`job_format`'s,
        ``ext`` the images' :func:`ext_text`.

        A job's images are then named by a concatenation each, not a pass each.
        """
        if not self.index_once:
            return None
        # One mark is the index's; a second would be the text's own (control characters
        # are replaced in every field, not in literal text).
        parts = form.format(_INDEX_MARK, ext).split(_INDEX_MARK)
        if len(parts) == 2 and index_is_inert(parts[0], parts[1]):
            return parts[0], parts[1]
        return None

    @property
    def field_names(self) -> frozenset[str]:
        return frozenset(s.name for s in self.segments if isinstance(s, Field))

    def render(self, job: Job, index: int, ext: str) -> str:
        """The raw relative path (``/``-separated) for image ``index`` of ``job``."""
        return self.bind(job)(index, ext)

    def bind(self, job: Job) -> Callable[[int, str], str]:
        """``render`` with the job's own fields worked out once, for all of its images.

        The result is one ``str.format`` call per image: the job's fields are already text
        in the format string, and only ``{index}`` and ``{ext}`` remain as slots.
        """
        fill = self.job_format(job).format

        def render_image(index: int, ext: str) -> str:
            text = _EXT_TEXT.get(ext)
            if text is None:
                text = ext_text(ext)
            return fill(index, text)

        return render_image

    def job_format(self, job: Job) -> str:
        """The job's raw path as a ``str.format`` string: the job's own fields already text,
        ``{0}`` where the image's index goes and ``{1}`` its extension's text
        (:func:`ext_text`)."""
        pieces: list[str] = []
        append = pieces.append
        for literal, per_job in self._plan:
            if per_job is None:
                append(literal)
                continue
            text = _render_field(per_job, job, 0, "")
            if "{" in text or "}" in text:
                text = text.replace("{", "{{").replace("}", "}}")
            append(text)
        return "".join(pieces)

    @functools.cached_property
    def _plan(self) -> tuple[tuple[str, Field | None], ...]:
        """The segments as :meth:`bind` uses them, worked out once (it runs once per job):
        literal text already escaped for ``str.format``, the per-image fields as its slots,
        and the fields each job renders."""
        plan: list[tuple[str, Field | None]] = []
        for segment in self.segments:
            if isinstance(segment, str):
                plan.append((segment.replace("{", "{{").replace("}", "}}"), None))
            elif segment.name == "index":
                plan.append(("{0}", None))
            elif segment.name == "ext":
                plan.append(("{1}", None))
            else:
                plan.append(("", segment))
        return tuple(plan)


def _literal_separators(segment: Segment) -> int:
    if isinstance(segment, str):
        return len(_SEPARATORS.findall(segment))
    if segment.name == "date" and segment.arg:
        return len(_SEPARATORS.findall(segment.arg))
    return 0


def _parse_segments(text: str) -> list[Segment]:
    segments: list[Segment] = []
    literal: list[str] = []
    i = 0
    while i < len(text):
        char = text[i]
        if char == "{" and text.startswith("{{", i):
            literal.append("{")
            i += 2
        elif char == "}" and text.startswith("}}", i):
            literal.append("}")
            i += 2
        elif char == "}":
            raise UsageError(
                f"template {text!r}: '}}' at position {i} closes nothing (write '}}}}')"
            )
        elif char == "{":
            end = text.find("}", i + 1)
            nested = text.find("{", i + 1)
            if end < 0 or (0 <= nested < end):
                raise UsageError(f"template {text!r}: '{{' at position {i} is never closed")
            body = text[i + 1 : end]
            name, colon, arg = body.partition(":")
            if not _FIELD_NAME.match(name):
                raise UsageError(f"template {text!r}: {{{body}}} is not a field name")
            if literal:
                segments.append("".join(literal))
                literal = []
            segments.append(Field(name=name, arg=arg if colon else None))
            i = end + 1
        else:
            literal.append(char)
            i += 1
    if literal:
        segments.append("".join(literal))
    return segments


def _known_fields() -> str:
    names = ["job_id", "index", "ext", "type", "date", "prompt", *_TEXT_FIELDS, "param:NAME"]
    return ", ".join(f"{{{n}}}" for n in names) + " and parameters such as {ar} {version}"


def _check_field(field: Field) -> None:
    name, arg = field.name, field.arg
    if name in _PLAIN_FIELDS:
        if arg is not None:
            raise UsageError(f"template field {{{name}}} takes no argument (got {{{name}:{arg}}})")
    elif name in ("job_id", "prompt"):
        if arg is not None and not (arg.isdigit() and 1 <= int(arg) <= MAX_PROMPT_LENGTH):
            raise UsageError(
                f"template field {{{name}:{arg}}}: the length must be a number "
                f"from 1 to {MAX_PROMPT_LENGTH}"
            )
    elif name == "date":
        fmt = arg if arg is not None else DEFAULT_DATE_FORMAT
        if "%" not in fmt:
            raise UsageError(f"template field {{date:{fmt}}} has no strftime directive like %Y")
        _check_directives(fmt)
        try:
            rendered = _SAMPLE_TIME.strftime(fmt)
        except ValueError as exc:
            raise UsageError(f"template field {{date:{fmt}}}: {exc}") from None
        if not rendered.strip():
            raise UsageError(f"template field {{date:{fmt}}} renders nothing")
    elif name == "param":
        if not arg or not _FIELD_NAME.match(arg.lower()):
            raise UsageError(
                "template field {param:NAME} needs a parameter name, e.g. {param:sref}"
            )
    elif name not in _TEXT_FIELDS and name not in PARAMETER_FIELDS:
        raise UsageError(f"unknown template field {{{name}}}", hint=f"known: {_known_fields()}")


def _check_directives(fmt: str) -> None:
    for match in _DIRECTIVE.finditer(fmt):
        flag, letter = match.groups()
        if not letter:
            raise UsageError(
                f"template field {{date:{fmt}}} ends with a lone '%' (write %% for a percent sign)"
            )
        if letter not in STRFTIME_DIRECTIVES or (flag and letter == "%"):
            raise UsageError(
                f"template field {{date:{fmt}}}: %{flag}{letter} is not a strftime directive",
                hint="use %Y %m %d %H %M %S %j %b %a …; %% for a percent sign",
            )


def _render_field(field: Field, job: Job, index: int, ext: str) -> str:
    renderer = _RENDERERS.get(field.name)
    if renderer is not None:
        return renderer(field, job, index, ext)
    if field.name == "param":
        assert field.arg is not None  # checked at parse time
        raw_name = field.arg.lower()
        return _param(job, ALIASES.get(raw_name, raw_name), MISSING)
    return _param(job, PARAMETER_FIELDS[field.name], field.arg or MISSING)


def _param(job: Job, name: str, missing: str) -> str:
    value = job.params.get(name)
    if value is None:
        return missing
    text = param_index_value(value)
    if name == "ar":
        text = text.replace(":", "x")
    return field_text(text) or missing


def field_text(value: str) -> str:
    """A field value with nothing that could split it into directories or break a name."""
    return _UNSAFE_IN_NAME.sub("_", value)


def prompt_text(prompt: str, length: int) -> str:
    """The prompt as a file-name fragment: URLs dropped, unsafe runs to one space, cut."""
    text = _URL.sub(" ", prompt) if "://" in prompt else prompt  # no URL without one
    text = _UNSAFE_IN_NAME.sub(" ", text)
    text = " ".join(text.split())[:length].rstrip(" .")
    return text or UNTITLED


def _render_date(field: Field, job: Job, index: int, ext: str) -> str:
    if job.enqueue_time is None:
        return UNKNOWN_DATE
    fmt = field.arg if field.arg is not None else DEFAULT_DATE_FORMAT
    moment = job.enqueue_time
    if moment.tzinfo is not UTC:
        moment = moment.astimezone(UTC)
    # A format of the day alone (the default's year and month) renders the same text for
    # every job of a day: worked out once per day, not once per job.
    day: tuple[str, int] | None = (fmt, moment.toordinal()) if _day_only(fmt) else None
    if day is not None:
        text = _DAYS.get(day)
        if text is not None:
            return text
    # The format's own '/' makes directories; anything else unsafe (a locale's month name
    # can hold anything) is neutralised like any other value.
    text = _UNSAFE_IN_DATE.sub("_", moment.strftime(fmt))
    if day is not None:
        if len(_DAYS) >= _DAYS_MAX:
            _DAYS.clear()
        _DAYS[day] = text
    return text


# strftime directives that depend on the (UTC) day alone: no time of day, no zone, no
# names a locale may change (%b %a), no locale forms (%c %x).
_DAY_DIRECTIVES = frozenset("CdDeFgGjmuUVwWyY%")
_DAYS: dict[tuple[str, int], str] = {}
_DAYS_MAX = 4096


@functools.cache
def _day_only(fmt: str) -> bool:
    return all(letter in _DAY_DIRECTIVES for _flag, letter in _DIRECTIVE.findall(fmt))


def _render_job_id(field: Field, job: Job, index: int, ext: str) -> str:
    text = field_text(job.id)
    return text[: int(field.arg)] if field.arg else text


def _render_prompt(field: Field, job: Job, index: int, ext: str) -> str:
    return prompt_text(job.prompt, int(field.arg) if field.arg else DEFAULT_PROMPT_LENGTH)


def _render_text(value: str | int | None, missing: str) -> str:
    if value is None:
        return missing
    return field_text(str(value)) or missing


_Renderer = Callable[[Field, Job, int, str], str]
_RENDERERS: dict[str, _Renderer] = {
    "job_id": _render_job_id,
    "index": lambda f, job, index, ext: str(index),
    "ext": lambda f, job, index, ext: ext_text(ext),
    "type": lambda f, job, index, ext: _render_text(job.type, MISSING),
    "date": _render_date,
    "prompt": _render_prompt,
    "username": lambda f, job, index, ext: _render_text(job.username, f.arg or UNKNOWN_USER),
    "job_type": lambda f, job, index, ext: _render_text(job.job_type, f.arg or MISSING),
    "width": lambda f, job, index, ext: _render_text(
        job.width if job.width is not None else _param_int(job, "width"), f.arg or MISSING
    ),
    "height": lambda f, job, index, ext: _render_text(
        job.height if job.height is not None else _param_int(job, "height"), f.arg or MISSING
    ),
}


def ext_text(ext: str) -> str:
    """What ``{ext}`` renders for an image of type ``ext``."""
    text = _EXT_TEXT.get(ext)
    if text is None:
        text = field_text(ext.lower()) or "bin"
        if len(_EXT_TEXT) < 1024:  # a handful of extensions in practice; bounded all the same
            _EXT_TEXT[ext] = text
    return text


_EXT_TEXT: dict[str, str] = {}


def _param_int(job: Job, name: str) -> int | None:
    value = job.params.get(name)
    return value if isinstance(value, int) and not isinstance(value, bool) else None
