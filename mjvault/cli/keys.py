"""``mjvault key``: passphrases of an encrypted vault, and ``key rotate``, which re-encrypts
every object under a new secret (:mod:`mjvault.integrity.rotate`)."""

from __future__ import annotations

import os
import sys

import click

from mjvault.cli.context import AppContext, pass_app
from mjvault.cli.passphrase import read_passphrase_file
from mjvault.errors import MjvaultError, PassphraseRequired


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


def _no_rotation(app: AppContext) -> None:
    """Key files change only once a rotation is done: it removes every key but its own."""
    from mjvault.store.keyring import journal_path

    if journal_path(app.vault_path() / "keys").exists():
        raise MjvaultError(
            "a key rotation of this vault is unfinished",
            hint="run `mjvault key rotate` (with the passphrase it was started with) to finish",
        )


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
    _no_rotation(app)
    vault = app.open_vault()
    key_id = vault.add_key(_new_passphrase(new_passphrase_file), label=label)
    app.emit({"added": key_id}, lambda: click.echo(f"added key {key_id}"))


@key_group.command("remove")
@click.argument("key_id")
@pass_app
def key_remove_command(app: AppContext, key_id: str) -> None:
    """Remove a passphrase (never the last one)."""
    _no_rotation(app)
    app.open_vault().remove_key(key_id)
    app.emit({"removed": key_id}, lambda: click.echo(f"removed key {key_id}"))


@key_group.command(
    "passwd",
    epilog="""\b
Examples:
  mjvault key passwd                                  the vault's own passphrase
  mjvault key passwd --remote cloud                   an encrypting remote's (remote add --encrypt)
  mjvault --passphrase-file old.txt key passwd --remote cloud --new-passphrase-file new.txt
""",
)
@new_passphrase_option
@click.option(
    "--remote",
    "remote_name",
    metavar="NAME",
    help="Change the passphrase of encrypting remote NAME instead (the current one comes "
    "from --passphrase-file, $MJVAULT_PASSPHRASE or a prompt). For an encrypted vault's "
    "remote, run `key passwd` first: this then makes the remote's key files the vault's.",
)
@pass_app
def key_passwd_command(
    app: AppContext, new_passphrase_file: str | None, remote_name: str | None
) -> None:
    """Change the passphrase you opened the vault (or remote NAME) with."""
    from mjvault.cli.passphrase import passphrase_source

    if remote_name is not None:
        _remote_passwd(app, remote_name, new_passphrase_file)
        return
    _no_rotation(app)
    vault = app.open_vault()
    old = passphrase_source(app.passphrase_file)()
    key_id = vault.change_passphrase(old, _new_passphrase(new_passphrase_file))
    app.emit({"key": key_id}, lambda: click.echo(f"passphrase changed (key {key_id})"))


def _remote_passwd(app: AppContext, name: str, new_passphrase_file: str | None) -> None:
    from mjvault.cli.passphrase import passphrase_source
    from mjvault.remotes.config import load_spec, open_backend
    from mjvault.remotes.rekey import change_remote_passphrase, mirror_vault_keys
    from mjvault.remotes.remote import RemoteMismatch, read_info

    vault = app.open_vault()
    spec = load_spec(vault.path, name)
    backend = open_backend(spec)
    try:
        info = read_info(backend)
        if info is None:
            raise RemoteMismatch(f"{backend.describe()} holds no mjvault remote")
        if vault.store.keys is not None:
            report = mirror_vault_keys(backend, info, vault.store.keys, vault.path / "keys")
        elif info.clone_as != "plain":
            raise RemoteMismatch(f"{backend.describe()} belongs to an encrypted vault")
        else:
            old = passphrase_source(app.passphrase_file)()
            report = change_remote_passphrase(
                backend, info, old, _new_passphrase(new_passphrase_file)
            )
    finally:
        backend.close()

    def human() -> None:
        if report.mode == "passphrase":
            click.echo(f"passphrase of remote {name} changed (key {report.added[0]})")
        else:
            click.echo(
                f"remote {name} now holds the vault's key files: "
                f"{len(report.added)} added, {len(report.removed)} removed"
            )

    app.emit({"remote": name} | report.to_json(), human)


@key_group.command(
    "rotate",
    epilog="""\b
Old copies of a key file, with their passphrase, then open nothing in this vault.
Ids, snapshots and refs stay; every object file and pack is written again.
Killed, it continues where it stopped when run again (same passphrase).
""",
)
@pass_app
def key_rotate_command(app: AppContext) -> None:
    """Re-encrypt every object under a new secret; keep one key, under this passphrase.

    Other passphrases are removed (their key files wrap the old secret): add them again
    with `mjvault key add`. The next push to each remote seals its copies again.
    """
    from mjvault.cli.passphrase import passphrase_source
    from mjvault.integrity.rotate import ensure_encrypted, rotate

    root = app.vault_path()
    ensure_encrypted(root)
    passphrase = passphrase_source(app.passphrase_file)()
    # Each object counts twice: once sealed again, once checked under the new secret.
    with app.progress(None, "re-encrypting, then checking", unit="obj") as bar:
        report = rotate(root, passphrase, progress=lambda _, count: bar.update(count))

    def human() -> None:
        verb = "finished rotation" if report.resumed else "rotated"
        click.echo(
            f"{verb}: key {report.key}; {report.loose_resealed} loose objects and "
            f"{report.packs_rewritten} packs re-encrypted, {report.objects_checked} objects "
            f"checked under the new secret"
        )
        if report.keys_removed:
            click.echo(
                f"removed {len(report.keys_removed)} other key(s): "
                f"{', '.join(report.keys_removed)} (add passphrases again with `mjvault key add`)"
            )
        for name in report.remotes:
            click.echo(
                f"note: remote {name} still holds copies under the old secret: the next "
                f"`mjvault push {name}` seals them again and removes the old key files there",
                err=True,
            )

    app.emit(report.to_json(), human)
