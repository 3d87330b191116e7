"""What every command shares: global options, vault discovery, output and progress manners."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from mjvault.errors import VaultNotFound

if TYPE_CHECKING:
    from mjvault.vault import Vault


@dataclass
class AppContext:
    vault_option: str | None = None
    json_output: bool = False
    verbosity: int = 0
    passphrase_file: str | None = None
    progress_enabled: bool = field(default_factory=lambda: sys.stderr.isatty())
    _open_vaults: list[Vault] = field(default_factory=list)

    # -- vault discovery -------------------------------------------------------------------
    def vault_path(self) -> Path:
        """--vault, else MJVAULT_VAULT, else the current directory or its nearest vault parent."""
        from mjvault.vault import find_vault

        explicit = self.vault_option or os.environ.get("MJVAULT_VAULT")
        if explicit:
            return Path(explicit)
        found = find_vault(Path.cwd())
        if found is None:
            raise VaultNotFound(
                "no vault here or in any parent directory",
                hint="pass --vault DIR, set MJVAULT_VAULT, or create one with `mjvault init DIR`",
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
            click.echo(json.dumps(data, indent=2, ensure_ascii=False, default=str))
        elif human is not None:
            human()
        else:
            click.echo(data)

    def info(self, message: str) -> None:
        """A human progress/status line on stderr; silent under --json or -q."""
        if not self.json_output and self.verbosity >= 0:
            click.echo(message, err=True)

    @contextmanager
    def progress(self, total: int | None, desc: str, unit: str = "it") -> Iterator[Any]:
        """A tqdm bar on a terminal; a no-op object elsewhere (pipes, --json, -q, CI)."""
        enabled = self.progress_enabled and not self.json_output and self.verbosity >= 0
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


pass_app = click.make_pass_decorator(AppContext)
