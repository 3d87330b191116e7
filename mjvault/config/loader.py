"""Layered loading: defaults < system file < user file < vault file < environment < options.

Each file is its base keys overlaid by its ``[profile.NAME]`` section when that profile is
chosen, so a profile in the user file beats the user file's own keys but not the vault's. Every
value remembers where it came from (``config show``). Every problem is a ConfigError naming the
file and key, with a did-you-mean where one fits.
"""

from __future__ import annotations

import enum
import logging
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mjvault.config.schema import SECTIONS, SETTINGS, Config, Setting, build_config
from mjvault.config.suggest import closest, did_you_mean
from mjvault.config.types import FilePath
from mjvault.errors import ConfigError
from mjvault.reports import Report

log = logging.getLogger(__name__)

SYSTEM_CONFIG = Path("/etc/mjvault/config.toml")
VAULT_CONFIG_NAME = "config.toml"
PROFILE_TABLE = "profile"

# Environment names that are not settings but are read elsewhere; never "did you mean"-ed.
OTHER_ENV = frozenset(
    {"MJVAULT_CONFIG", "MJVAULT_SYSTEM_CONFIG", "MJVAULT_PROFILE", "MJVAULT_PASSPHRASE"}
)
# Single-cookie shortcuts: the value becomes one entry of source.extra_cookies.
COOKIE_ENV = {"MJVAULT_CF_CLEARANCE": "cf_clearance"}
# Command-line options whose name is not the setting's own name.
OPTION_NAMES = {"vault.path": "--vault"}


class Layer(enum.StrEnum):
    DEFAULT = "default"
    SYSTEM = "system"
    USER = "user"
    VAULT = "vault"
    ENV = "env"
    CLI = "cli"


FILE_LAYERS = (Layer.SYSTEM, Layer.USER, Layer.VAULT)


@dataclass(frozen=True)
class Origin(Report):
    """Where an effective value came from: a layer and, within it, a file, variable or option."""

    layer: Layer
    source: str | None = None
    profile: str | None = None

    def __str__(self) -> str:
        where = self.source or ""
        if self.profile:
            where = f"{where} [profile.{self.profile}]".strip()
        return f"{self.layer.value} {where}".strip()


@dataclass(frozen=True)
class ConfigFile:
    layer: Layer
    path: Path

    @property
    def exists(self) -> bool:
        return self.path.is_file()


@dataclass(frozen=True)
class LoadedConfig:
    """The effective :class:`Config` with the origin of each value and the files consulted."""

    config: Config
    origins: Mapping[str, Origin]
    profile: str | None
    files: tuple[ConfigFile, ...]
    profiles: frozenset[str] = field(default_factory=frozenset)

    def origin(self, key: str) -> Origin:
        return self.origins[key]

    def file(self, layer: Layer) -> ConfigFile | None:
        return next((f for f in self.files if f.layer is layer), None)


# -- where the files are ---------------------------------------------------------------------
def system_config_path(environ: Mapping[str, str]) -> Path:
    return Path(environ.get("MJVAULT_SYSTEM_CONFIG") or SYSTEM_CONFIG)


def user_config_path(environ: Mapping[str, str]) -> Path:
    explicit = environ.get("MJVAULT_CONFIG")
    if explicit:
        return Path(explicit).expanduser()
    if sys.platform.startswith("linux"):
        # platformdirs' rule on Linux (the XDG base directory spec), without its import:
        # ~7 ms of every command's start-up, for one path. Elsewhere it knows best.
        base = os.environ.get("XDG_CONFIG_HOME", "").strip() or os.path.expanduser("~/.config")
        return Path(base) / "mjvault" / "config.toml"
    import platformdirs

    return Path(platformdirs.user_config_dir("mjvault", appauthor=False)) / "config.toml"


def vault_config_path(vault_dir: Path) -> Path:
    return vault_dir / VAULT_CONFIG_NAME


def config_files(environ: Mapping[str, str], vault_dir: Path | None) -> tuple[ConfigFile, ...]:
    files = [
        ConfigFile(Layer.SYSTEM, system_config_path(environ)),
        ConfigFile(Layer.USER, user_config_path(environ)),
    ]
    if vault_dir is not None:
        files.append(ConfigFile(Layer.VAULT, vault_config_path(vault_dir)))
    return tuple(files)


# -- reading and checking one file -----------------------------------------------------------
def read_toml(path: Path) -> dict[str, Any] | None:
    """The parsed file, or None when it does not exist."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a directory, expected a TOML file") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    import tomllib  # only where a file exists: most commands find none or one

    try:
        return tomllib.loads(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None


def _is_private(path: Path) -> bool:
    if os.name == "nt":  # POSIX modes mean nothing there; the user profile is private already
        return True
    try:
        return path.stat().st_mode & 0o077 == 0
    except FileNotFoundError:  # about to be created, and created owner-only
        return True


def _unknown_key_message(section: str, name: str) -> str:
    key = f"{section}.{name}"
    local = closest(name, [s.name for s in SETTINGS.values() if s.section == section])
    if local:
        return f"unknown key {key} (did you mean {section}.{local}?)"
    # The right key in the wrong section: `[sync] web_base` -> source.web_base.
    elsewhere = [k for k, s in SETTINGS.items() if s.name == name]
    if elsewhere:
        return f"unknown key {key} (did you mean {elsewhere[0]}?)"
    return f"unknown key {key}" + did_you_mean(key, SETTINGS)


def parse_table(
    table: Mapping[str, Any],
    *,
    where: str,
    layer: Layer,
    path: Path | None,
) -> dict[str, Any]:
    """Validate one table of sections (a file's base or one profile) into values by key."""
    values: dict[str, Any] = {}
    for section, body in table.items():
        if section not in SECTIONS:
            suggestion = did_you_mean(section, SECTIONS)
            raise ConfigError(f"{where}: unknown section [{section}]{suggestion}")
        if not isinstance(body, dict):
            raise ConfigError(f"{where}: {section} must be a [{section}] table")
        for name, raw in body.items():
            spec = SETTINGS.get(f"{section}.{name}")
            if spec is None:
                raise ConfigError(f"{where}: {_unknown_key_message(section, name)}")
            values[spec.key] = check_file_value(spec, raw, where=where, layer=layer, path=path)
    return values


def check_file_value(
    spec: Setting, raw: object, *, where: str, layer: Layer, path: Path | None
) -> Any:
    if layer is Layer.VAULT and not spec.vault_scope:
        reason = "a secret must not travel with a vault" if spec.secret else "a personal setting"
        raise ConfigError(
            f"{where}: {spec.key} cannot be set in a vault's config ({reason}); "
            "set it in your user config instead"
        )
    if spec.secret and path is not None and not _is_private(path):
        raise ConfigError(
            f"{where}: {spec.key} is a secret in a file other users can read",
            hint=f"run `chmod 600 {path}`, or keep it in the keyring or the environment",
        )
    try:
        value = spec.type.parse(raw, from_text=False)
    except ValueError as exc:
        raise ConfigError(f"{where}: {spec.key}: {exc}") from None
    if isinstance(spec.type, FilePath) and path is not None and not value.is_absolute():
        value = (path.parent / value).absolute()
    return value


@dataclass(frozen=True)
class ParsedFile:
    base: dict[str, Any]
    profiles: dict[str, dict[str, Any]]


def parse_document(doc: Mapping[str, Any], path: Path, layer: Layer) -> ParsedFile:
    """Check a whole file: its base sections and every ``[profile.NAME]`` section."""
    base_table = {k: v for k, v in doc.items() if k != PROFILE_TABLE}
    base = parse_table(base_table, where=str(path), layer=layer, path=path)
    profiles: dict[str, dict[str, Any]] = {}
    profile_tables = doc.get(PROFILE_TABLE, {})
    if not isinstance(profile_tables, dict):
        raise ConfigError(f"{path}: profile must be tables like [profile.work]")
    for name, table in profile_tables.items():
        where = f"{path} [profile.{name}]"
        if not isinstance(table, dict):
            raise ConfigError(f"{where}: a profile holds sections such as [profile.{name}.sync]")
        profiles[name] = parse_table(table, where=where, layer=layer, path=path)
    return ParsedFile(base, profiles)


def check_file(path: Path, layer: Layer) -> ParsedFile:
    """Validate a config file as the loader would."""
    doc = read_toml(path)
    return parse_document(doc or {}, path, layer)


def check_text(text: str, path: Path, layer: Layer) -> ParsedFile:
    """Validate ``text`` as the future content of ``path`` (`config edit` before it writes)."""
    import tomllib

    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None
    return parse_document(doc, path, layer)


# -- the environment and the command line ----------------------------------------------------
def parse_text(spec: Setting, text: str, *, where: str, base: Path | None = None) -> Any:
    """A setting from text (environment, option, `config set`); "" means unset (None)."""
    try:
        value = spec.type.parse(text, from_text=True)
    except ValueError as exc:
        raise ConfigError(f"{where}: {spec.key}: {exc}") from None
    if isinstance(spec.type, FilePath) and not value.is_absolute():
        value = ((base or Path.cwd()) / value).absolute()
    return value


def env_values(environ: Mapping[str, str]) -> dict[str, tuple[Any, Origin]]:
    values: dict[str, tuple[Any, Origin]] = {}
    for spec in SETTINGS.values():
        # The first name set wins: the canonical MJVAULT_ name, then older tools' names.
        name = next((n for n in spec.env if environ.get(n, "").strip()), None)
        if name is not None:
            value = parse_text(spec, environ[name].strip(), where=f"environment {name}")
            values[spec.key] = (value, Origin(Layer.ENV, name))
    for name, cookie in COOKIE_ENV.items():
        if environ.get(name, "").strip():
            current = dict(values.get("source.extra_cookies", ({}, None))[0])
            current[cookie] = environ[name].strip()
            values["source.extra_cookies"] = (current, Origin(Layer.ENV, name))
    _warn_misspelt_env(environ)
    return values


_warned: set[str] = set()


def _warn_misspelt_env(environ: Mapping[str, str]) -> None:
    known = {n for spec in SETTINGS.values() for n in spec.env} | OTHER_ENV | set(COOKIE_ENV)
    for name in environ:
        if name.startswith("MJVAULT_") and name not in known:
            # Only near misses: other parts of the project may read MJVAULT_ names of their own.
            match = closest(name, known, cutoff=0.85)
            if match and name not in _warned:
                _warned.add(name)  # the layers are loaded more than once per command
                log.warning("unknown environment variable %s (did you mean %s?)", name, match)


def cli_values(overrides: Mapping[str, Any]) -> dict[str, tuple[Any, Origin]]:
    """Command-line options by dotted key; text is parsed, typed values are checked as given."""
    values: dict[str, tuple[Any, Origin]] = {}
    for key, raw in overrides.items():
        if raw is None:
            continue
        spec = SETTINGS.get(key)
        if spec is None:
            raise ConfigError(f"unknown setting {key}" + did_you_mean(key, SETTINGS))
        option = OPTION_NAMES.get(key) or "--" + spec.name.replace("_", "-")
        if isinstance(raw, str):
            value = parse_text(spec, raw, where=f"option {option}")
        else:
            try:
                value = spec.type.parse(raw, from_text=False)
            except ValueError as exc:
                raise ConfigError(f"option {option}: {exc}") from None
        values[key] = (value, Origin(Layer.CLI, option))
    return values


# -- putting the layers together -------------------------------------------------------------
def load_config(
    *,
    environ: Mapping[str, str] | None = None,
    profile: str | None = None,
    vault_dir: Path | None = None,
    overrides: Mapping[str, Any] | None = None,
    strict_profile: bool = True,
) -> LoadedConfig:
    """The effective configuration. ``profile`` falls back to ``MJVAULT_PROFILE``.

    A profile no file defines is an error unless ``strict_profile`` is off (setup creates one).
    """
    environ = os.environ if environ is None else environ
    profile = profile or environ.get("MJVAULT_PROFILE") or None
    files = config_files(environ, vault_dir)

    values: dict[str, Any] = {key: spec.default for key, spec in SETTINGS.items()}
    origins: dict[str, Origin] = {key: Origin(Layer.DEFAULT) for key in SETTINGS}

    def apply(layer_values: Mapping[str, Any], origin: Origin) -> None:
        for key, value in layer_values.items():
            values[key] = value
            origins[key] = origin

    known_profiles: set[str] = set()
    for config_file in files:
        doc = read_toml(config_file.path)
        if doc is None:
            continue
        parsed = parse_document(doc, config_file.path, config_file.layer)
        known_profiles.update(parsed.profiles)
        source = str(config_file.path)
        apply(parsed.base, Origin(config_file.layer, source))
        if profile and profile in parsed.profiles:
            apply(parsed.profiles[profile], Origin(config_file.layer, source, profile))

    if profile and strict_profile and profile not in known_profiles:
        hint = (
            f"known profiles: {', '.join(sorted(known_profiles))}"
            if known_profiles
            else "add a [profile.NAME] section to your config file"
        )
        raise ConfigError(
            f"no profile named {profile!r}" + did_you_mean(profile, known_profiles), hint=hint
        )

    for key, (value, origin) in {**env_values(environ), **cli_values(overrides or {})}.items():
        values[key] = value
        origins[key] = origin

    return LoadedConfig(
        config=build_config(values),
        origins=origins,
        profile=profile,
        files=files,
        profiles=frozenset(known_profiles),
    )
