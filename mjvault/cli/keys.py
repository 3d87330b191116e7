"""``mjvault key``: passphrases of an encrypted vault. Objects are never re-encrypted."""

from __future__ import annotations

import os
import sys

import click

from mjvault.cli.context import AppContext, pass_app
from mjvault.cli.passphrase import read_passphrase_file
from mjvault.errors import PassphraseRequired


def _new_passphrase(new_passphrase_file: str | None) -> str:
    """A new passphrase: --new-passphrase-file, $MJVAULT_NEW_PASSPHRASE, or a confirmed prompt."""
    if new_passphrase_file:
        return read_passphrase_file(new_passphrase_file)
    from_env = os.environ.get("MJVAULT_NEW_PASSPHRASE")
    if from_env is not None:
        return from_env
    if not sys.stdin.isatty():
        raise PassphraseRequired(
            "no new passphrase given",
            hint="set MJVAULT_NEW_PASSPHRASE or pass --new-passphrase-file",
        )
    value: str = click.prompt("New passphrase", hide_input=True, confirmation_prompt=True, err=True)
    return value


new_passphrase_option = click.option(
    "--new-passphrase-file",
    type=click.Path(dir_okay=False),
    help="Read the new passphrase from FILE (else $MJVAULT_NEW_PASSPHRASE, else a prompt).",
)


@click.group("key")
def key_group() -> None:
    """Manage the passphrases that open an encrypted vault."""


@key_group.command("list")
@pass_app
def key_list_command(app: AppContext) -> None:
    """List key files (id, label, creation time)."""
    keys = app.open_vault().list_keys()

    def human() -> None:
        for key in keys:
            click.echo(f"{key['id']}  {key['created']}  {key['label']}")

    app.emit(keys, human)


@key_group.command("add")
@click.option("--label", default="", help="A note to tell keys apart (e.g. 'laptop').")
@new_passphrase_option
@pass_app
def key_add_command(app: AppContext, label: str, new_passphrase_file: str | None) -> None:
    """Add another passphrase that opens this vault."""
    vault = app.open_vault()
    key_id = vault.add_key(_new_passphrase(new_passphrase_file), label=label)
    app.emit({"added": key_id}, lambda: click.echo(f"added key {key_id}"))


@key_group.command("remove")
@click.argument("key_id")
@pass_app
def key_remove_command(app: AppContext, key_id: str) -> None:
    """Remove a passphrase (never the last one)."""
    app.open_vault().remove_key(key_id)
    app.emit({"removed": key_id}, lambda: click.echo(f"removed key {key_id}"))


@key_group.command("passwd")
@new_passphrase_option
@pass_app
def key_passwd_command(app: AppContext, new_passphrase_file: str | None) -> None:
    """Change the passphrase you opened the vault with."""
    from mjvault.cli.passphrase import passphrase_source

    vault = app.open_vault()
    old = passphrase_source(app.passphrase_file)()
    key_id = vault.change_passphrase(old, _new_passphrase(new_passphrase_file))
    app.emit({"key": key_id}, lambda: click.echo(f"passphrase changed (key {key_id})"))
