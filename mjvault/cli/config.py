"""`mjvault config`: show, get, set, unset and edit settings; where the files are."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import click
from click.shell_completion import CompletionItem

from mjvault.cli.context import AppContext, json_option, pass_app
from mjvault.config import SETTINGS, Layer, parse_text, user_config_path, vault_config_path
from mjvault.config.loader import check_text, config_files
from mjvault.config.report import MASK, setting_row, setting_rows
from mjvault.config.writer import NEW_FILE_HEADER, lookup, set_value, unset_value, write_private
from mjvault.errors import EXIT_ERROR, ConfigError, ExitStatus, UsageError, VaultNotFound

EPILOG = """\b
Examples:
  mjvault config show                     every setting and where it comes from
  mjvault config get sync.jobs
  mjvault config set sync.jobs 8          in your user config
  mjvault config set --vault checkout.link hardlink
  mjvault --profile work config set source.user_id 48d7667d-4177-49e2-adc1-5674bdde9593
  mjvault config set source.session_token -    (reads the secret from stdin)
  mjvault config edit                     open the user config in $EDITOR, checked after
"""


def _complete_key(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[Any]:
    return [CompletionItem(k, help=s.doc) for k, s in SETTINGS.items() if k.startswith(incomplete)]


KEY = click.argument("key", shell_complete=_complete_key)


def _target_option(command: Any) -> Any:
    command = click.option(
        "--vault", "target", flag_value="vault", help="The vault's own config.toml."
    )(command)
    return click.option(
        "--user", "target", flag_value="user", default=True, help="Your user config (default)."
    )(command)


def _profile(app: AppContext) -> str | None:
    # Not app.loaded_config.profile: writing must work while the file is broken, and must be
    # able to create a profile that does not exist yet.
    return app.profile_name()


def _target_file(app: AppContext, target: str) -> tuple[Path, Layer]:
    if target == "vault":
        vault_dir = app.vault_path()
        from mjvault.vault import is_vault

        if not is_vault(vault_dir):
            raise VaultNotFound(f"{vault_dir} is not a vault", hint="create it with `mjvault init`")
        return vault_config_path(vault_dir), Layer.VAULT
    return user_config_path(os.environ), Layer.USER


@click.group(epilog=EPILOG)
def config() -> None:
    """Settings: defaults < /etc < user file < vault < MJVAULT_* < options."""


@config.command()
@json_option
@pass_app
def show(app: AppContext) -> None:
    """Every effective setting and the layer it came from; secrets masked."""
    loaded = app.loaded_config
    rows = setting_rows(loaded)
    vault_dir = app.find_vault_dir()
    data = {
        "profile": loaded.profile,
        "vault": str(vault_dir) if vault_dir else None,
        "files": [
            {"layer": f.layer.value, "path": str(f.path), "exists": f.exists} for f in loaded.files
        ],
        "settings": {row.key: row.to_json() for row in rows},
    }

    def human() -> None:
        if loaded.profile:
            click.echo(f"# profile {loaded.profile}")
        click.echo(f"# vault {vault_dir}" if vault_dir else "# no vault here")
        lines = [f"{row.key} = {row.text}" if row.text else f"{row.key} =" for row in rows]
        width = min(max(map(len, lines)), 60)  # a long User-Agent must not push every comment
        for line, row in zip(lines, rows, strict=True):
            click.echo(f"{line:<{width}}  # {row.origin}")

    app.emit(data, human)


@config.command()
@KEY
@json_option
@pass_app
def get(app: AppContext, key: str) -> None:
    """Print one effective setting (exit 1, nothing printed, when it is unset)."""
    lookup(key)
    row = setting_row(app.loaded_config, key)
    if app.json_output:
        app.emit({"key": key, **row.to_json()})
    elif row.text:
        spec = SETTINGS[key]
        value = app.config.get(key)
        click.echo(MASK if spec.secret else spec.type.to_text(value))
    if row.value is None:
        raise ExitStatus(EXIT_ERROR)


@config.command(name="set")
@KEY
@click.argument("value")
@_target_option
@json_option
@pass_app
def set_command(app: AppContext, key: str, value: str, target: str) -> None:
    """Set KEY to VALUE in the user (default) or vault config; `-` reads VALUE from stdin.

    With --profile NAME the value goes into [profile.NAME]. A secret is never taken from the
    command line, where other users of the machine can see it: pass `-`.
    """
    spec = lookup(key)
    if value == "-":
        value = _read_value(spec.key, hide=spec.secret)
    elif spec.secret:
        raise UsageError(
            f"{key} is a secret and is not taken on the command line",
            hint=f"pass `-` and type or pipe it in: mjvault config set {key} -",
        )
    path, layer = _target_file(app, target)
    if layer is Layer.VAULT and spec.key in CLEAR_IN_NO_ENCRYPTED_VAULT:
        _refuse_in_encrypted_vault(path.parent, spec.key)
    parsed = parse_text(spec, value, where="value", base=Path.cwd())
    profile = _profile(app)
    set_value(path, key, parsed, layer=layer, profile=profile)
    shown = MASK if spec.secret else spec.type.to_text(parsed)
    where = f"{path} [profile.{profile}]" if profile else str(path)
    data = {
        "key": key,
        "value": MASK if spec.secret else spec.type.to_json(parsed),
        "file": str(path),
        "profile": profile,
    }
    app.emit(data, lambda: click.echo(f"{key} = {shown}  ({where})"))


# Settings that name the user: an encrypted vault keeps nothing of the kind readable at rest,
# and its config.toml is plain text (docs/FORMAT.md §1.1).
CLEAR_IN_NO_ENCRYPTED_VAULT = frozenset({"source.user_id"})


def _refuse_in_encrypted_vault(vault_dir: Path, key: str) -> None:
    import json

    try:
        encrypted = bool(json.loads((vault_dir / "config").read_bytes()).get("encryption"))
    except (OSError, ValueError, AttributeError):
        encrypted = False
    if encrypted:
        raise UsageError(
            f"{key} is not kept in an encrypted vault's config.toml, which is plain text",
            hint=f"set it in your user config instead: mjvault config set {key} VALUE",
        )


def _read_value(key: str, *, hide: bool) -> str:
    if sys.stdin.isatty():
        return str(click.prompt(key, hide_input=hide, err=True))
    text = sys.stdin.readline()
    return text.rstrip("\r\n")


@config.command()
@KEY
@_target_option
@json_option
@pass_app
def unset(app: AppContext, key: str, target: str) -> None:
    """Remove KEY from the user (default) or vault config, so a lower layer applies again."""
    lookup(key)
    path, layer = _target_file(app, target)
    profile = _profile(app)
    removed = unset_value(path, key, layer=layer, profile=profile)
    message = f"{key} removed from {path}" if removed else f"{key} was not set in {path}"
    data = {"key": key, "file": str(path), "profile": profile, "removed": removed}
    app.emit(data, lambda: click.echo(message))


@config.command()
@_target_option
@pass_app
def edit(app: AppContext, target: str) -> None:
    """Open the user (default) or vault config in $EDITOR; nothing invalid is saved."""
    path, layer = _target_file(app, target)
    text = path.read_text(encoding="utf-8") if path.exists() else NEW_FILE_HEADER
    original = text
    while True:
        edited = click.edit(text, extension=".toml", require_save=False)
        if edited is None or edited == original:
            app.info(f"no change to {path}")
            return
        try:
            check_text(edited, path, layer)
            break
        except ConfigError as err:
            if not (sys.stdin.isatty() and sys.stderr.isatty()):
                raise ConfigError(f"{err} — nothing was saved") from None
            click.echo(f"mjvault: error: {err}", err=True)
            if not click.confirm("Edit again?", default=True, err=True):
                raise ConfigError(f"{path} was left unchanged") from None
            text = edited
    write_private(path, edited)
    app.info(f"saved {path}")


@config.command()
@json_option
@pass_app
def path(app: AppContext) -> None:
    """Where the config files are, lowest layer first, and which exist."""
    try:
        vault_dir = app.find_vault_dir()
    except ConfigError:  # a broken file must not hide where the files are
        vault_dir = None
    files = config_files(os.environ, vault_dir)

    def human() -> None:
        for f in files:
            click.echo(f"{f.layer.value:<7} {f.path}{'' if f.exists else '  (not present)'}")

    app.emit(
        [{"layer": f.layer.value, "path": str(f.path), "exists": f.exists} for f in files], human
    )
