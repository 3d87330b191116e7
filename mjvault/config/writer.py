"""Changing one key of a config file in place, keeping the person's comments and layout.

tomlkit edits the document rather than re-serialising a dict, so `config set` does not wipe the
comments someone wrote by hand. A change is validated as a whole file before it is written, and
written atomically with owner-only permissions: a config may hold cookie values.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import tomlkit

from mjvault.config.loader import PROFILE_TABLE, Layer, parse_document
from mjvault.config.schema import SETTINGS, Setting
from mjvault.config.suggest import did_you_mean
from mjvault.errors import ConfigError

NEW_FILE_HEADER = """\
# mjvault configuration. Every key, its type and default: docs/configuration.md,
# or `mjvault config show` for the effective values and where they come from.
#
# [sync]
# jobs = 4
#
# [profile.work.source]
# user_id = "48d7667d-4177-49e2-adc1-5674bdde9593"
"""


def lookup(key: str) -> Setting:
    spec = SETTINGS.get(key)
    if spec is None:
        raise ConfigError(f"unknown setting {key}" + did_you_mean(key, SETTINGS))
    return spec


def _load(path: Path) -> tomlkit.TOMLDocument:
    try:
        return tomlkit.parse(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return tomlkit.document()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    except tomlkit.exceptions.ParseError as exc:
        raise ConfigError(
            f"{path}: invalid TOML: {exc}", hint="fix it with `mjvault config edit`"
        ) from None


def _section(doc: tomlkit.TOMLDocument, section: str, profile: str | None, create: bool) -> Any:
    """The table a key lives in: ``[section]`` or ``[profile.NAME.section]``."""
    container: Any = doc
    path = [PROFILE_TABLE, profile, section] if profile else [section]
    for depth, name in enumerate(path):
        if name not in container:
            if not create:
                return None
            # Intermediate profile tables stay implicit so the file reads [profile.work.sync].
            container[name] = tomlkit.table(is_super_table=depth < len(path) - 1)
        container = container[name]
    return container


def set_value(
    path: Path, key: str, value: Any, *, layer: Layer, profile: str | None = None
) -> None:
    """Write ``key = value`` (an already parsed value) into ``path``."""
    spec = lookup(key)
    doc = _load(path)
    table = _section(doc, spec.section, profile, create=True)
    table[spec.name] = spec.type.to_toml(value)
    _write_checked(path, doc, layer)


def unset_value(path: Path, key: str, *, layer: Layer, profile: str | None = None) -> bool:
    """Remove ``key``; False when the file did not set it. Emptied tables are removed too."""
    spec = lookup(key)
    if not path.exists():
        return False
    doc = _load(path)
    table = _section(doc, spec.section, profile, create=False)
    if table is None or spec.name not in table:
        return False
    del table[spec.name]
    _drop_empty_tables(doc, [PROFILE_TABLE, profile, spec.section] if profile else [spec.section])
    _write_checked(path, doc, layer)
    return True


def _drop_empty_tables(doc: tomlkit.TOMLDocument, path: list[str]) -> None:
    """Remove the tables along ``path`` that a removal left empty, innermost first."""
    for depth in range(len(path), 0, -1):
        parent: Any = doc
        for name in path[: depth - 1]:
            parent = parent[name]
        if parent[path[depth - 1]]:
            return
        del parent[path[depth - 1]]


def _write_checked(path: Path, doc: tomlkit.TOMLDocument, layer: Layer) -> None:
    # Never leave a file the loader would refuse: check the whole result before replacing.
    parse_document(doc.unwrap(), path, layer)
    write_private(path, tomlkit.dumps(doc))


def write_private(path: Path, text: str) -> None:
    """Replace ``path`` atomically with ``text``; new files are readable by their owner only."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        mode = path.stat().st_mode & 0o777
    except FileNotFoundError:
        mode = 0o600
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
