"""mjvault's layered, typed configuration (docs/configuration.md).

from mjvault.config import load_config
loaded = load_config(profile="work", vault_dir=Path("~/mj-vault").expanduser())
loaded.config.sync.jobs, loaded.origin("sync.jobs")
"""

from __future__ import annotations

from mjvault.config.loader import (
    ConfigFile,
    Layer,
    LoadedConfig,
    Origin,
    check_file,
    load_config,
    parse_text,
    system_config_path,
    user_config_path,
    vault_config_path,
)
from mjvault.config.resolve import (
    client_settings,
    default_vault_finder,
    register_config_secrets,
    resolve_vault_dir,
    session_token,
)
from mjvault.config.schema import SECRET_KEYS, SETTINGS, Config, Setting

__all__ = [
    "SECRET_KEYS",
    "SETTINGS",
    "Config",
    "ConfigFile",
    "Layer",
    "LoadedConfig",
    "Origin",
    "Setting",
    "check_file",
    "client_settings",
    "default_vault_finder",
    "load_config",
    "parse_text",
    "register_config_secrets",
    "resolve_vault_dir",
    "session_token",
    "system_config_path",
    "user_config_path",
    "vault_config_path",
]
