"""What every command shares: global options, vault discovery, output and progress manners."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, overload

import click

from mjvault.errors import ConfigError, VaultNotFound

# The configuration loads when a command first asks for it, not when the CLI starts:
# `--version` and `--help` never do (issue 12, start-up).
if TYPE_CHECKING:
    from mjvault.config import Config, LoadedConfig
    from mjvault.vault import Vault


@dataclass
class AppContext:
    vault_option: str | None = None
    json_output: bool = False
    emitted_json: bool = False
    verbosity: int = 0
    passphrase_file: str | None = None
    progress_enabled: bool = field(default_factory=lambda: sys.stderr.isatty())
    profile: str | None = None
    #: Command-line values of settings by dotted key (the last layer); see :meth:`override`.
    overrides: dict[str, Any] = field(default_factory=dict)
    _open_vaults: list[Vault] = field(default_factory=list)
    _base: LoadedConfig | None = None
    _loaded: LoadedConfig | None = None
    _vault_dir: tuple[Path | None] | None = None  # found once per command; (None,) = no vault

    # -- configuration -----------------------------------------------------------------------
    @property
    def config(self) -> Config:
        """The effective typed configuration, loaded on first use (docs/configuration.md)."""
        return self.loaded_config.config

    @property
    def loaded_config(self) -> LoadedConfig:
        """The effective configuration with the origin of every value, vault layer included."""
        if self._loaded is None:
            from mjvault.config import register_config_secrets

            vault_dir = self.find_vault_dir()
            self._loaded = self._load(vault_dir) if vault_dir is not None else self.base_config
            register_config_secrets(self._loaded)
        return self._loaded

    @property
    def base_config(self) -> LoadedConfig:
        """Every layer but the vault's own: enough to find the vault and to choose output."""
        if self._base is None:
            self._base = self._load(None)
        return self._base

    def override(self, values: dict[str, Any]) -> None:
        """Add command-line values (None = option not given) as the top layer.

        A command calls this with its own options before it reads :attr:`config`, e.g.
        ``app.override({"sync.jobs": jobs})``.
        """
        given = {k: v for k, v in values.items() if v is not None}
        if given:
            self.overrides.update(given)
            self._base = self._loaded = self._vault_dir = None

    def _load(self, vault_dir: Path | None) -> LoadedConfig:
        from mjvault.config import load_config

        overrides = dict(self.overrides)
        if self.vault_option:
            overrides["vault.path"] = self.vault_option
        return load_config(profile=self.profile, vault_dir=vault_dir, overrides=overrides)

    def profile_name(self) -> str | None:
        """The profile chosen: ``--profile``, else ``MJVAULT_PROFILE`` (as load_config reads it).

        Without loading the configuration, for commands that must work while a file is broken
        or before the profile has a section (setup, config set, auth logout).
        """
        return self.profile or os.environ.get("MJVAULT_PROFILE") or None

    # -- vault discovery -------------------------------------------------------------------
    def find_vault_dir(self) -> Path | None:
        """The vault this command is about, or None (see resolve_vault_dir for the order)."""
        if self._vault_dir is None:
            from mjvault.config import default_vault_finder, resolve_vault_dir

            found, _why = resolve_vault_dir(self.base_config, Path.cwd(), default_vault_finder())
            self._vault_dir = (found,)
        return self._vault_dir[0]

    def vault_path(self) -> Path:
        """--vault, MJVAULT_VAULT, a profile's vault.path, the enclosing vault, vault.path."""
        found = self.find_vault_dir()
        if found is None:
            raise VaultNotFound(
                "no vault here or in any parent directory",
                hint="pass --vault DIR, set MJVAULT_VAULT or vault.path, "
                "or create one with `mjvault init DIR` or `mjvault setup`",
            )
        return found

    def open_vault(self, path: Path | None = None) -> Vault:
        from mjvault.cli.passphrase import passphrase_source
        from mjvault.vault import Vault

        vault = Vault.open(
            path or self.vault_path(),
            passphrase=passphrase_source(self.passphrase_file),
        )
        self._open_vaults.append(vault)
        return vault

    def close(self) -> None:
        for vault in self._open_vaults:
            vault.close()
        self._open_vaults.clear()

    # -- output ----------------------------------------------------------------------------
    def emit(self, data: Any, human: Callable[[], None] | None = None) -> None:
        """Print ``data`` as JSON under --json, else call ``human`` (or print data plainly)."""
        if self.json_output:
            import json

            click.echo(json.dumps(data, indent=2, ensure_ascii=False, default=str))
            self.emitted_json = True
        elif human is not None:
            human()
        else:
            click.echo(data)

    def info(self, message: str) -> None:
        """A human progress/status line on stderr; silent under --json or -q."""
        if not self.json_output and self.verbosity >= 0:
            click.echo(message, err=True)

    def apply_output_settings(self, ctx: click.Context, *, no_color: bool) -> None:
        """Colour and progress bars from --no-color, NO_COLOR and the output.* settings.

        A broken configuration must not stop `config edit` from running to fix it, so here it
        is ignored; the command that reads the configuration reports it.
        """
        try:
            output = self.base_config.config.output
            color, progress = output.color, output.progress
        except ConfigError:
            color = progress = "auto"
        ctx.color = color_choice(no_color=no_color, environ=os.environ, configured=color)
        if progress != "auto":
            self.progress_enabled = progress == "always"

    @contextmanager
    def progress(self, total: int | None, desc: str, unit: str = "it") -> Iterator[Any]:
        """A tqdm bar on a terminal; a no-op object elsewhere (pipes, --json, -q, CI)."""
        enabled = self.progress_enabled and not self.json_output and self.verbosity >= 0
        if not enabled:
            yield SilentBar(total)
            return
        from tqdm import tqdm

        bar = tqdm(
            total=total,
            desc=desc,
            unit=unit,
            disable=not enabled,
            file=sys.stderr,
            dynamic_ncols=True,
            leave=False,
        )
        try:
            yield bar
        finally:
            bar.close()


class SilentBar:
    """What a disabled tqdm bar does, nothing, without importing tqdm: it loads
    importlib.metadata and multiprocessing, ~22 ms of start-up for output nobody watches."""

    def __init__(self, total: float | None) -> None:
        self.total = total  # callers may set it, and unit_scale, as on a tqdm bar
        self.unit_scale = False
        self.n = 0  # a disabled tqdm bar does not count either

    def update(self, n: float | None = 1) -> None:
        pass

    def reset(self, total: float | None = None) -> None:
        self.total = total

    def refresh(self) -> None:
        pass

    def close(self) -> None:
        pass


def color_choice(*, no_color: bool, environ: Mapping[str, str], configured: str) -> bool | None:
    """True/False to force colour on/off, None for click's default (a terminal only)."""
    if no_color or environ.get("NO_COLOR"):  # https://no-color.org: any non-empty value
        return False
    return {"always": True, "never": False}.get(configured)


pass_app = click.make_pass_decorator(AppContext)


JSON_HELP = "Machine-readable JSON on stdout."


def _set_json(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if value:
        ctx.ensure_object(AppContext).json_output = True


CommandT = TypeVar("CommandT", bound=Callable[..., Any])


@overload
def json_option(command: CommandT, /) -> CommandT: ...


@overload
def json_option(*, help: str = JSON_HELP) -> Callable[[CommandT], CommandT]: ...


def json_option(
    command: CommandT | None = None, /, *, help: str = JSON_HELP
) -> CommandT | Callable[[CommandT], CommandT]:
    """The one way a command takes ``--json``: before the command name (the root's) or after
    it (``mjvault config show --json``), with the same effect. It sets
    :attr:`AppContext.json_output`, so the answer goes through :meth:`AppContext.emit` and a
    failure is one ``{"error": ...}`` object on stdout (cli/root.py); ``help`` says what the
    document holds where the generic text says too little.
    """

    def add(cmd: CommandT) -> CommandT:
        option = click.option(
            "--json",
            is_flag=True,
            expose_value=False,
            is_eager=True,
            callback=_set_json,
            help=help,
        )
        return option(cmd)

    return add(command) if command is not None else add


def give_every_command_json(command: click.Command) -> None:
    """Give ``command`` (and, for a group, every command under it) the one ``--json`` where it
    declares none, so that ``mjvault verify --json`` is ``mjvault --json verify`` for every
    command, not only those whose module asked for it."""
    if not any("--json" in param.opts for param in command.params):
        json_option(command)
    if isinstance(command, click.Group):
        for sub in command.commands.values():
            give_every_command_json(sub)
