"""``mjvault init``: create a vault."""

from __future__ import annotations

from pathlib import Path

import click

from mjvault.cli.context import AppContext, pass_app
from mjvault.cli.passphrase import passphrase_source
from mjvault.cli.path_args import NonEmptyPath


@click.command(
    "init",
    epilog="""\b
Examples:
  mjvault init ~/mj-vault
  MJVAULT_PASSPHRASE_FILE=... mjvault init --encrypt ~/mj-vault-private
  mjvault --passphrase-file ~/.mjpass init --encrypt /mnt/usb/mj
""",
)
@click.argument("directory", required=False, type=NonEmptyPath(file_okay=False, path_type=Path))
@click.option(
    "--encrypt",
    is_flag=True,
    help="Encrypt every object and manifest (AES-256-GCM; key wrapped by an Argon2id passphrase).",
)
@pass_app
def init_command(app: AppContext, directory: Path | None, encrypt: bool) -> None:
    """Create a new, empty vault in DIRECTORY (default: --vault, else the current directory).

    A plain vault stores images as they are, so views can symlink to them. An encrypted vault
    names objects by keyed hash and seals them; it needs its passphrase for every command.
    """
    from mjvault.vault import Vault

    target = directory or Path(app.vault_option or ".")
    source = passphrase_source(app.passphrase_file, confirm=True) if encrypt else None
    vault = Vault.init(target, encrypt=encrypt, passphrase=source)
    vault.close()
    app.emit(
        {"vault": str(vault.path.resolve()), "encrypted": encrypt, "id": vault.id},
        lambda: click.echo(
            f"Created {'an encrypted' if encrypt else 'a plain'} vault in {vault.path.resolve()}\n"
            f"Next: mjvault --vault {vault.path} import DIR   (or: mjvault sync)"
        ),
    )
