"""`mjvault setup`: the first-run wizard. It asks; mjvault.firstrun does.

Every question has an option, so `mjvault setup --yes --vault-dir … --user-id … --token-stdin`
runs without a terminal. Rerunning offers the current values as defaults and keeps the stored
session cookie unless a new one is given.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from mjvault import firstrun
from mjvault.cli.context import AppContext, json_option, pass_app
from mjvault.cli.passphrase import passphrase_source
from mjvault.config.schema import SETTINGS
from mjvault.errors import ConfigError, MjvaultError, UsageError
from mjvault.firstrun import TokenStorage, VaultState

EPILOG = """\b
Examples:
  mjvault setup                                   answer the questions
  mjvault --profile work setup                    a second account in [profile.work]
  printf '%s\\n' "$TOKEN" | mjvault setup --yes --vault-dir ~/mj-vault \\
      --user-id 48d7667d-4177-49e2-adc1-5674bdde9593 --token-stdin --token-storage env
"""


class Wizard:
    """One run of the questions; ``interactive`` False takes options and defaults silently."""

    def __init__(self, app: AppContext, interactive: bool) -> None:
        self.app = app
        self.interactive = interactive

    def say(self, message: str = "") -> None:
        if not self.app.json_output and self.app.verbosity >= 0:
            click.echo(message)

    def heading(self, text: str) -> None:
        self.say()
        self.say(click.style(text, bold=True))

    # -- the vault ---------------------------------------------------------------------------
    def choose_vault(self, given: Path | None, default: Path) -> tuple[Path, VaultState]:
        path = given
        while True:
            if path is None:
                path = (
                    Path(click.prompt("Vault directory", default=str(default)))
                    if self.interactive
                    else default
                )
            path = path.expanduser().absolute()
            state = firstrun.vault_state(path)
            if state is not VaultState.OCCUPIED:
                return path, state
            message = f"{path} holds files and is not a vault; choose a new or empty directory"
            if not self.interactive or given is not None:
                raise UsageError(message)
            self.say(message)
            path = None

    def passphrase(self) -> str:
        if (
            self.interactive
            and not self.app.passphrase_file
            and "MJVAULT_PASSPHRASE" not in os.environ
        ):
            self.say("The passphrase cannot be recovered: keep it in a password manager.")
        return passphrase_source(self.app.passphrase_file, confirm=True)()

    # -- credentials -------------------------------------------------------------------------
    def token(self, from_stdin: bool, current: firstrun.Current) -> str | None:
        """A new token, or None to keep the current one."""
        if from_stdin:
            value = sys.stdin.readline().strip()
            if not value:
                raise UsageError("--token-stdin given but standard input had no token")
            return value
        if not self.interactive:
            return None
        hint = f"Enter keeps the one from {current.token_origin}" if current.token else "hidden"
        while True:
            value = click.prompt(
                f"Session cookie value ({hint})",
                default="",
                show_default=False,
                hide_input=True,
            ).strip()
            if value or current.token:
                return value or None
            self.say("A session cookie is needed to sync; paste it (nothing is shown).")

    def user_id(self, given: str | None, current: str | None) -> str | None:
        spec = SETTINGS["source.user_id"]
        if given is not None:
            return str(spec.type.parse(given, from_text=True)) if given else None
        if not self.interactive:
            return current
        while True:
            text = click.prompt("User ID", default=current or "", show_default=bool(current))
            if not text.strip():
                return current
            try:
                return str(spec.type.parse(text, from_text=True))
            except ValueError as exc:
                self.say(f"  {exc}")

    def storage(self, given: str | None) -> TokenStorage:
        if given:
            return TokenStorage(given)
        has_keyring = firstrun.keyring_available()
        default = TokenStorage.KEYRING if has_keyring else TokenStorage.ENV
        if not self.interactive:
            return default
        self.say("Where should the session cookie be kept?")
        if has_keyring:
            self.say("  keyring  the system keyring (recommended)")
        else:
            self.say("  keyring  (no system keyring found: pip install 'mjvault[keyring]')")
        self.say("  config   your user config file, readable by you only")
        self.say("  env      nowhere: you set MIDJOURNEY_SESSION_TOKEN yourself")
        choices = [s.value for s in TokenStorage if s is not TokenStorage.KEYRING or has_keyring]
        return TokenStorage(
            click.prompt("Keep it in", type=click.Choice(choices), default=default.value)
        )


@click.command(epilog=EPILOG)
@click.option(
    "--vault-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Where the vault is or should be created (default: vault.path, else ~/mj-vault).",
)
@click.option("--encrypt/--no-encrypt", default=None, help="Encrypt a new vault (default: no).")
@click.option("--user-id", metavar="UUID", help="Your Midjourney user ID.")
@click.option(
    "--token-stdin",
    is_flag=True,
    help="Read the session cookie value from the first line of stdin (never from argv).",
)
@click.option(
    "--token-storage",
    type=click.Choice([s.value for s in TokenStorage]),
    help="Keep the token in the keyring (default when one exists), the user config, or "
    "nowhere (env: you export MIDJOURNEY_SESSION_TOKEN).",
)
@click.option("--skip-test", is_flag=True, help="Do not test the connection to Midjourney.")
@click.option("-y", "--yes", is_flag=True, help="Ask nothing: take options, else defaults.")
@json_option
@pass_app
def setup(
    app: AppContext,
    vault_dir: Path | None,
    encrypt: bool | None,
    user_id: str | None,
    token_stdin: bool,
    token_storage: str | None,
    skip_test: bool,
    yes: bool,
) -> None:
    """Set up mjvault: a vault, your Midjourney login, a connection test. Safe to rerun."""
    interactive = not yes and sys.stdin.isatty() and not app.json_output
    wizard = Wizard(app, interactive)
    profile = app.profile or os.environ.get("MJVAULT_PROFILE") or None
    current = firstrun.current_settings(profile)

    wizard.say("mjvault setup" + (f" for profile {profile}" if profile else ""))
    if interactive:
        wizard.say("Enter keeps the value in [brackets]. Ctrl-C stops without saving settings.")

    wizard.heading("1. The vault")
    given_dir = vault_dir or (Path(app.vault_option) if app.vault_option else None)
    path, state = wizard.choose_vault(given_dir, current.vault_path)
    created = False
    if state is VaultState.EXISTING:
        wizard.say(f"Using the existing vault at {path}.")
    else:
        if encrypt is None:
            encrypt = interactive and click.confirm(
                "Encrypt the vault? (checkouts are then copies, not links)", default=False
            )
        passphrase = wizard.passphrase() if encrypt else None
        firstrun.create_vault(path, encrypt=encrypt, passphrase=passphrase)
        created = True
        wizard.say(f"Created {'an encrypted' if encrypt else 'a plain'} vault at {path}.")

    wizard.heading("2. Your Midjourney login")
    if interactive or not current.token:
        wizard.say(firstrun.BROWSER_STEPS)
    new_token = wizard.token(token_stdin, current)
    chosen_user_id = wizard.user_id(user_id, current.user_id)
    token = new_token or current.token
    storage = wizard.storage(token_storage) if new_token else None

    wizard.heading("3. Connection test")
    if skip_test:
        result = firstrun.ConnectionResult(None, "skipped (--skip-test)")
    else:
        result = firstrun.check_connection(current.loaded, token=token, user_id=chosen_user_id)
    status = {True: "ok", False: "failed", None: "not run"}[result.ok]
    wizard.say(f"Connection test {status}: {result.message}")
    if (
        result.ok is False
        and interactive
        and not click.confirm("Save the settings anyway?", default=True)
    ):
        raise ConfigError("setup stopped; no settings were saved")

    config_file = firstrun.write_user_settings(
        {"vault.path": path, "source.user_id": chosen_user_id}, profile=profile
    )
    if new_token and storage is not None:
        firstrun.store_token(new_token, storage, profile=profile)

    wizard.heading("Saved")
    wizard.say(f"Settings: {config_file}" + (f" [profile.{profile}]" if profile else ""))
    if storage is TokenStorage.KEYRING:
        wizard.say("Session cookie: in the system keyring.")
    elif storage is TokenStorage.CONFIG:
        wizard.say(f"Session cookie: in {config_file} (readable by you only).")
    elif storage is TokenStorage.ENV:
        wizard.say("Session cookie: not saved. Before syncing: export MIDJOURNEY_SESSION_TOKEN=...")
    prefix = f"mjvault --profile {profile}" if profile else "mjvault"
    wizard.say("Next:")
    wizard.say(f"  {prefix} sync                               fetch every job and image")
    wizard.say(f"  {prefix} checkout ~/Pictures/Midjourney     browse them as files")
    wizard.say(f"  {prefix} config show                        all settings")

    app.emit(
        {
            "profile": profile,
            "vault": str(path),
            "vault_created": created,
            "encrypted": bool(encrypt) if created else None,
            "config_file": str(config_file),
            "user_id": chosen_user_id,
            "token_storage": storage.value if storage else None,
            "connection": {"ok": result.ok, "message": result.message},
        },
        lambda: None,
    )
    if result.ok is False and not interactive:
        raise MjvaultError(
            f"connection test failed: {result.message}",
            hint="settings were saved; refresh the cookie and rerun `mjvault setup`",
        )
