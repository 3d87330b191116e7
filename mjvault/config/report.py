"""The effective configuration as rows a person or a script can read, secrets masked."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import tomlkit

from mjvault.config.loader import LoadedConfig, Origin
from mjvault.config.resolve import session_token
from mjvault.config.schema import SETTINGS
from mjvault.reports import Report, json_meta

MASK = "********"


@dataclass(frozen=True)
class SettingRow(Report):
    key: str = field(metadata=json_meta(omit=True))
    value: Any  # JSON-ready; MASK for a secret that is set, None when unset
    text: str = field(metadata=json_meta(omit=True))  # as a TOML value, or MASK, or "" when unset
    origin: Origin
    secret: bool


def _masked(value: Any) -> tuple[Any, str]:
    if isinstance(value, dict):  # cookie names are not secret, their values are
        masked = {name: MASK for name in value}
        return masked, tomlkit.item(masked).as_string() if masked else ""
    return MASK, MASK


def setting_row(loaded: LoadedConfig, key: str, *, look_in_keyring: bool = True) -> SettingRow:
    spec = SETTINGS[key]
    value = loaded.config.get(key)
    origin = loaded.origin(key)
    if key == "source.session_token" and not value and look_in_keyring:
        token, token_origin = session_token(loaded)
        if token and token_origin:
            value, origin = token, token_origin
    if value is None or value == {}:
        return SettingRow(key, None if value is None else {}, "", origin, spec.secret)
    if spec.secret:
        shown, text = _masked(value)
        return SettingRow(key, shown, text, origin, True)
    return SettingRow(
        key,
        spec.type.to_json(value),
        tomlkit.item(spec.type.to_toml(value)).as_string(),
        origin,
        False,
    )


def setting_rows(loaded: LoadedConfig, *, look_in_keyring: bool = True) -> list[SettingRow]:
    return [setting_row(loaded, key, look_in_keyring=look_in_keyring) for key in SETTINGS]
