"""Path safety for views: every rendered path stays inside DIR and is a valid name on Linux,
macOS and Windows alike. Pure.

A view is often synced or copied between machines (a NAS share, a USB disk), so names are
held to the strictest of the three: no ``<>:"|?*``, no control characters, no leading or
trailing dots or spaces, no Windows device names (``CON``, ``COM1`` …), at most 255 bytes of
UTF-8 per component (ext4's and APFS' limit; never more than NTFS' 255 UTF-16 units), and NFC
so that macOS (which presents decomposed names) and Linux agree on what a name is. Names are
compared case-insensitively when telling colliding images apart, because macOS and Windows
file systems usually are.
"""

from __future__ import annotations

import re
import unicodedata
from collections import defaultdict
from collections.abc import Container, Iterable, Mapping

MAX_COMPONENT_BYTES = 255
# macOS' PATH_MAX is 1024 bytes for DIR and the rendered path together; keep room for DIR.
MAX_PATH_BYTES = 800
# A component is never cut below this, so a deep template still leaves readable names.
MIN_COMPONENT_BYTES = 16
# Longer "extensions" are part of the name (``a.very-long-sentence``), not an extension.
MAX_EXT_BYTES = 16
REPLACEMENT = "_"

_WINDOWS_DEVICES = frozenset(
    ["CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$"]
    + [f"{p}{n}" for p in ("COM", "LPT") for n in [*"0123456789", "\u00b9", "\u00b2", "\u00b3"]]
)
_DEVICE_MAX = max(len(name) for name in _WINDOWS_DEVICES)
# Forbidden on Windows (and ':' on macOS); control characters; lone surrogates (cannot be
# encoded at all); bidi overrides (they let a name display as something it is not).
_FORBIDDEN = re.compile(
    r'[<>:"|?*\x00-\x1f\x7f-\x9f\ud800-\udfff\u202a-\u202e\u2066-\u2069\ufeff\ufffe\uffff]'
)
_SEPARATOR = re.compile(r"[/\\]")
# Printable ASCII without forbidden characters, not starting or ending with a dot or space.
_END = r"\x21\x23-\x29\x2b-\x2d\x30-\x39\x3b\x3d\x40-\x5b\x5d-\x7b\x7d\x7e"
_PLAIN_ASCII = re.compile(f"[{_END}](?:[{_END}\\x20\\x2e]*[{_END}])?")
# safe_component() of directory names already seen (it is pure); bounded, cleared when full.
_DIRECTORY_NAMES: dict[str, str] = {}
_DIRECTORY_NAMES_MAX = 65536
# safe_relpath()'s directory part by its raw text: (safe components joined, the components).
_DIRECTORIES: dict[str, tuple[str, tuple[str, ...]]] = {}
_DIRECTORIES_MAX = 16384


def safe_component(name: str, *, limit: int = MAX_COMPONENT_BYTES) -> str:
    """One path component made valid everywhere; never empty, ``.`` or ``..``."""
    if (
        limit == MAX_COMPONENT_BYTES
        and len(name) <= limit
        and _PLAIN_ASCII.fullmatch(name)
        and not _is_device_name(name)
    ):
        return name  # the common case, decided by one regex: printable ASCII, nothing to fix
    text = unicodedata.normalize("NFC", _FORBIDDEN.sub(REPLACEMENT, name))
    text = _FORBIDDEN.sub(REPLACEMENT, text)  # NFC never creates these; cheap to be sure
    text = text.strip(" .")
    if not text:
        return REPLACEMENT
    stem = text.split(".", 1)[0].rstrip(" ").upper()
    if stem in _WINDOWS_DEVICES:
        text = REPLACEMENT + text
    return fit_component(text, limit)


def _is_device_name(name: str) -> bool:
    """Is ``name`` a Windows device (``CON``, ``com1.png``, ``nul .txt`` …)?

    Decided without building the upper-cased stem when the stem is longer than any device
    name and does not end in a space (rstrip could not shorten it): once per image.
    """
    dot = name.find(".")
    stem_end = dot if dot >= 0 else len(name)
    if stem_end > _DEVICE_MAX and name[stem_end - 1] != " ":
        return False
    return name.split(".", 1)[0].rstrip(" ").upper() in _WINDOWS_DEVICES


def fit_component(name: str, limit: int = MAX_COMPONENT_BYTES) -> str:
    """``name`` cut to ``limit`` bytes of UTF-8 on a character boundary, extension kept."""
    if len(name.encode("utf-8")) <= limit:
        return name
    stem, dot, ext = name.rpartition(".")
    suffix = f".{ext}" if dot and stem and len(ext.encode("utf-8")) <= MAX_EXT_BYTES else ""
    base = name[: len(name) - len(suffix)]
    room = max(1, limit - len(suffix.encode("utf-8")))
    cut = _cut_utf8(base, room)
    # Cutting can leave a trailing space or dot, which Windows would silently drop, or a
    # string that NFC would recompose; tidy until stable.
    while True:
        tidy = unicodedata.normalize("NFC", cut).rstrip(" .") or REPLACEMENT
        if tidy == cut:
            break
        cut = _cut_utf8(tidy, room)
    return cut + suffix


def _cut_utf8(text: str, limit: int) -> str:
    data = text.encode("utf-8")
    if len(data) <= limit:
        return text
    return data[:limit].decode("utf-8", errors="ignore")


def safe_relpath(raw: str, *, max_bytes: int = MAX_PATH_BYTES) -> str:
    """A rendered template path made safe: relative, inside DIR, valid on all platforms.

    ``..``, ``.`` and empty components cannot climb or vanish silently: empty ones are
    dropped (``a//b``), dot-only ones become ``_``. An absolute path becomes relative.
    """
    cut = raw.rfind("/")
    if "\\" in raw:
        cut = max(cut, raw.rfind("\\"))
    # The images of a job, and most jobs of a view, share their directories: those are
    # decided once per distinct text, and only the file name is looked at per image.
    folder = raw[:cut] if cut > 0 else ""
    head = _DIRECTORIES.get(folder)
    if head is None:
        head = _directories(folder)
    prefix, dirs = head
    name = raw[cut + 1 :]
    if name:
        last = safe_component(name)
        joined = prefix + last
    else:
        joined = prefix[:-1] or REPLACEMENT
    if len(joined) <= max_bytes and (joined.isascii() or len(joined.encode()) <= max_bytes):
        return joined  # fits as it is: _shorten would change nothing
    parts = [*dirs, last] if name else [*dirs]
    return "/".join(_shorten(parts, max_bytes))


# An image's index as safe_relpath() sees it: decimal digits, and at most this many.
INDEX_DIGITS = 4


def index_is_inert(head: str, tail: str) -> bool:
    """Is ``head + str(i) + tail`` already safe (:func:`safe_relpath` returns it unchanged)
    for every index ``i`` below ``10 ** INDEX_DIGITS``?

    Then the images of a job that share an extension are named by a concatenation each, not
    a pass of :func:`safe_relpath` each. Decided from the path with index 0, when the index
    lies in its file name and that name takes :func:`safe_component`'s quick way (printable
    ASCII, with room for more digits): digits are of the characters that way lets through
    anywhere, so other digits change nothing it looks at, except a Windows device name
    (``COM1``), which cannot be when the name's stem is longer than any device name.
    """
    if "/" in tail or "\\" in tail:
        return False  # the index would be in a directory's name
    probe = f"{head}0{tail}"
    if not probe.isascii() or len(probe) + INDEX_DIGITS - 1 > MAX_PATH_BYTES:
        return False
    name = probe[max(probe.rfind("/"), probe.rfind("\\")) + 1 :]
    if len(name) + INDEX_DIGITS - 1 > MAX_COMPONENT_BYTES or not _PLAIN_ASCII.fullmatch(name):
        return False
    dot = name.find(".")
    stem_end = dot if dot >= 0 else len(name)
    if stem_end <= _DEVICE_MAX or name[stem_end - 1] == " ":
        return False
    # The name is safe as it is (above); safe_relpath's directories must be too.
    cut = len(probe) - len(name) - 1
    if cut < 0:
        return True
    folder = probe[:cut]
    head_dirs = _DIRECTORIES.get(folder)
    if head_dirs is None:
        head_dirs = _directories(folder)
    return cut > 0 and head_dirs[0] == probe[: cut + 1]


def _directories(folder: str) -> tuple[str, tuple[str, ...]]:
    """The safe components of a path's directory part, and them joined with a ``/`` after."""
    parts: list[str] = []
    for component in _SEPARATOR.split(folder):
        if not component:
            continue
        # Directory names repeat across a view (dates, versions …): decide each once.
        safe = _DIRECTORY_NAMES.get(component)
        if safe is None:
            if len(_DIRECTORY_NAMES) >= _DIRECTORY_NAMES_MAX:
                _DIRECTORY_NAMES.clear()
            safe = _DIRECTORY_NAMES[component] = safe_component(component)
        parts.append(safe)
    head = ("".join(f"{p}/" for p in parts), tuple(parts))
    if len(_DIRECTORIES) >= _DIRECTORIES_MAX:
        _DIRECTORIES.clear()
    _DIRECTORIES[folder] = head
    return head


def _shorten(parts: list[str], max_bytes: int) -> list[str]:
    """Cut the longest components until the whole path fits ``max_bytes``."""
    sizes = [len(p.encode("utf-8")) for p in parts]
    total = sum(sizes) + len(parts) - 1
    while total > max_bytes:
        longest = max(range(len(parts)), key=lambda i: (sizes[i], -i))
        if sizes[longest] <= MIN_COMPONENT_BYTES:
            break  # the template is too deep to fit; Template.parse bounds the depth
        target = max(MIN_COMPONENT_BYTES, sizes[longest] - (total - max_bytes))
        parts[longest] = fit_component(parts[longest], target)
        new_size = len(parts[longest].encode("utf-8"))
        if new_size >= sizes[longest]:  # cannot shrink further (extension-only names)
            parts[longest] = fit_component(parts[longest].replace(".", REPLACEMENT), target)
            new_size = len(parts[longest].encode("utf-8"))
            if new_size >= sizes[longest]:
                break
        total -= sizes[longest] - new_size
        sizes[longest] = new_size
    return parts


def fold(path: str) -> str:
    """The key under which two paths are the same file on a case-insensitive file system."""
    if path.isascii():
        return path.lower()  # what NFC + casefold give for ASCII, many times faster
    return unicodedata.normalize("NFC", path).casefold()


def with_suffix_before_ext(path: str, suffix: str) -> str:
    """``a/b/cat.png`` + ``~1234abcd_0`` -> ``a/b/cat~1234abcd_0.png``, still within limits."""
    head, slash, name = path.rpartition("/")
    stem, dot, ext = name.rpartition(".")
    if not dot or not stem or len(ext.encode("utf-8")) > MAX_EXT_BYTES:
        stem, ext = name, ""
    tail = suffix + (f".{ext}" if ext else "")
    head_bytes = len(head.encode("utf-8")) + len(slash)
    room = min(MAX_COMPONENT_BYTES, MAX_PATH_BYTES - head_bytes) - len(tail.encode("utf-8"))
    room = max(room, 1)
    stem = _cut_utf8(stem, room).rstrip(" .") or REPLACEMENT
    return f"{head}{slash}{stem}{tail}"


def disambiguation_suffix(job_id: str, index: int, *, full: bool = False) -> str:
    short = job_id if full else job_id.replace("-", "")[:8]
    return "~" + safe_component(f"{short}_{index}")


def resolve_collisions(
    wanted: Mapping[tuple[str, int], str],
    taken: Iterable[str] = (),
    *,
    taken_folded: Container[str] = frozenset(),
) -> dict[tuple[str, int], str]:
    """Give each image ``(job_id, index)`` a distinct path, however the set is ordered.

    Images whose paths collide (case-insensitively) are sorted by ``(job_id, index)``; the
    first keeps the plain path, the others get ``~<short job id>_<index>`` before the
    extension (the full job id if even that is taken). ``taken`` are paths already in use by
    something else (files of the view that this call does not cover); ``taken_folded`` the
    same as :func:`fold` keys, for callers that keep them (a view's 100k files).
    """
    groups: dict[str, list[tuple[str, int]]] = defaultdict(list)
    for key, path in wanted.items():
        groups[fold(path)].append(key)
    used = _Used(taken_folded, {fold(p) for p in taken})
    result: dict[tuple[str, int], str] = {}
    losers: list[tuple[str, int]] = []
    # Winners first, over the whole set, so a suffixed name never displaces a plain one.
    for folded in sorted(groups):
        keys = sorted(groups[folded])
        if folded in used:
            losers.extend(keys)
            continue
        result[keys[0]] = wanted[keys[0]]
        used.add(folded)
        losers.extend(keys[1:])
    for key in sorted(losers):
        result[key] = _free_variant(wanted[key], key, used)
    return result


class _Used:
    """Folded names in use: a caller's (read-only, possibly large) set plus this call's own."""

    def __init__(self, base: Container[str], extra: set[str]) -> None:
        self.base = base
        self.extra = extra

    def __contains__(self, folded: str) -> bool:
        return folded in self.extra or folded in self.base

    def add(self, folded: str) -> None:
        self.extra.add(folded)


def _free_variant(path: str, key: tuple[str, int], used: _Used) -> str:
    job_id, index = key
    candidates = [
        with_suffix_before_ext(path, disambiguation_suffix(job_id, index)),
        with_suffix_before_ext(path, disambiguation_suffix(job_id, index, full=True)),
    ]
    counter = 2
    while True:
        for candidate in candidates:
            if fold(candidate) not in used:
                used.add(fold(candidate))
                return candidate
        candidates = [
            with_suffix_before_ext(
                path, disambiguation_suffix(job_id, index, full=True) + f"~{counter}"
            )
        ]
        counter += 1
