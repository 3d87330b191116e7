"""`mjvault setup`: the first-run wizard. It asks; mjvault.firstrun does.

Every question has an option, so `mjvault setup --yes --vault-dir … --user-id … --token-stdin`
runs without a terminal. Rerunning offers the current values as defaults, keeps the stored
session cookie unless a new one is given, and keeps the vault's views rather than adding one.
"""

from __future__ import annotations

import os
import sys
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from mjvault import firstrun
from mjvault.cli.context import AppContext, json_option, pass_app
from mjvault.cli.passphrase import passphrase_source
from mjvault.config.schema import SETTINGS
from mjvault.errors import EXIT_PARTIAL, ConfigError, ExitStatus, MjvaultError, UsageError
from mjvault.firstrun import DEFAULT_VIEW_DIR, TokenStorage, VaultState

if TYPE_CHECKING:
    from mjvault.sync import SyncReport
    from mjvault.vault import Vault
    from mjvault.views.reconcile import RefreshReport
    from mjvault.views.registry import View

EPILOG = """\b
Examples:
  mjvault setup                                   answer the questions
  mjvault --profile work setup                    a second account in [profile.work]
  printf '%s\\n' "$TOKEN" | mjvault setup --yes --vault-dir ~/mj-vault \\
      --user-id 48d7667d-4177-49e2-adc1-5674bdde9593 --token-stdin --token-storage env \\
      --view ~/Pictures/Midjourney --no-sync
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

    # -- the first view ----------------------------------------------------------------------
    def show_views(self, views: list[View]) -> None:
        if not views:
            return
        self.say("This vault already has " + ("a view:" if len(views) == 1 else "these views:"))
        for view in views:
            definition = view.definition
            self.say(
                f"  {view.name}: {definition.directory} [{definition.link.value}] "
                f"{view.file_count()} files"
            )

    def view_directory(
        self, vault: Vault, given: Path | None, no_view: bool, has_views: bool
    ) -> Path | None:
        """Where the new view goes, or None for none; a rerun's default keeps what exists."""
        if no_view:
            return None
        if given is not None or not self.interactive:
            chosen = given if given is not None else (None if has_views else DEFAULT_VIEW_DIR)
            if chosen is not None:
                problem = firstrun.view_directory_problem(vault.path, chosen)
                if problem:
                    raise UsageError(problem, hint="choose another --view DIR, or --no-view")
            return chosen
        files = (
            "copies (the vault is encrypted, so links could not show the images; copies take "
            "disk space)"
            if vault.encrypted
            else "symbolic links into the vault (they take no space)"
        )
        self.say(
            "A view is a folder of ordinary image files, named by date and prompt, for any file\n"
            f"manager or photo app; each sync keeps it up to date. Its files are {files}."
        )
        question = "Create another folder view?" if has_views else "Create a folder view?"
        if not click.confirm(question, default=not has_views):
            return None
        while True:
            path = Path(click.prompt("View directory", default=str(DEFAULT_VIEW_DIR)))
            problem = firstrun.view_directory_problem(vault.path, path)
            if problem is None:
                return path
            self.say(f"  {problem}")

    def sync_now(
        self, given: bool | None, connection_ok: bool | None, *, has_view: bool, synced: bool
    ) -> bool:
        if connection_ok is False:
            if given:
                self.say("No sync: the connection test failed.")
            return False
        if given is not None or not self.interactive:
            return bool(given)
        if synced:
            # A vault that holds jobs: a sync fetches only what is new, no hours-long first run.
            self.say("This vault has been filled before: a sync now fetches what is new.")
            return click.confirm("Sync now?", default=False)
        self.say("A first sync fetches every job and image; for a large account it takes hours.")
        fills = " and fills the view" if has_view else ""
        self.say(f"Without it now, the next `mjvault sync` fetches them{fills}.")
        return click.confirm("Run the first sync now?", default=False)


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
@click.option(
    "--view",
    "view_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Create a folder view of the images in DIR (default when the vault has none: "
    "~/Pictures/Midjourney).",
)
@click.option("--no-view", is_flag=True, help="Create no view.")
@click.option("--template", "-t", help="The view's path template (default: a dated tree).")
@click.option(
    "--sync/--no-sync",
    "sync_now",
    default=None,
    help="Run the first sync now (default: no; the next `mjvault sync` fills the view).",
)
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
    view_dir: Path | None,
    no_view: bool,
    template: str | None,
    sync_now: bool | None,
    yes: bool,
) -> None:
    """Set up mjvault: a vault, your Midjourney login, a connection test, a first view.

    Safe to rerun: it offers the current values and keeps the views the vault has.
    """
    if no_view and (view_dir is not None or template is not None):
        raise UsageError("--no-view takes neither --view nor --template")
    if template is not None:
        from mjvault.views.template import Template

        Template.parse(template)  # a bad template fails before anything is created
    interactive = not yes and sys.stdin.isatty() and not app.json_output
    wizard = Wizard(app, interactive)
    profile = app.profile_name()
    current = firstrun.current_settings(profile)

    wizard.say("mjvault setup" + (f" for profile {profile}" if profile else ""))
    if interactive:
        wizard.say("Enter keeps the value in [brackets]. Ctrl-C stops without saving settings.")

    wizard.heading("1. The vault")
    given_dir = vault_dir or (Path(app.vault_option) if app.vault_option else None)
    path, state = wizard.choose_vault(given_dir, current.vault_path)
    if view_dir is not None and (problem := firstrun.view_directory_problem(path, view_dir)):
        raise UsageError(problem, hint="choose another --view DIR, or --no-view")
    with ExitStack() as closing:
        created_vault: Vault | None = None
        if state is VaultState.EXISTING:
            wizard.say(f"Using the existing vault at {path}.")
        else:
            if encrypt is None:
                encrypt = interactive and click.confirm(
                    "Encrypt the vault? (checkouts are then copies, not links)", default=False
                )
            passphrase = wizard.passphrase() if encrypt else None
            created_vault = firstrun.create_vault(path, encrypt=encrypt, passphrase=passphrase)
            closing.callback(created_vault.close)
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
        where = f" at {result.url}" if result.url else ""
        wizard.say(f"Connection test {status}: {result.message}{where}")
        if (
            result.ok is False
            and interactive
            and not click.confirm("Save the settings anyway?", default=True)
        ):
            raise ConfigError("setup stopped; no settings were saved")

        wizard.heading("4. A first view")
        vault: Vault | None = None
        view_path: Path | None = None
        views: list[View] = []
        run_sync = False
        if no_view:
            wizard.say("No view (--no-view).")
        else:
            # An existing encrypted vault asks for its passphrase here, and only here.
            vault = created_vault or app.open_vault(path)
            views = firstrun.existing_views(vault)
            wizard.show_views(views)
            view_path = wizard.view_directory(vault, view_dir, no_view, bool(views))
        synced = firstrun.has_synced(path)
        run_sync = wizard.sync_now(
            sync_now, result.ok, has_view=bool(view_path or views), synced=synced
        )
        if run_sync and vault is None:
            vault = created_vault or app.open_vault(path)

        config_file = firstrun.write_user_settings(
            {"vault.path": path, "source.user_id": chosen_user_id}, profile=profile
        )
        if new_token and storage is not None:
            firstrun.store_token(new_token, storage, profile=profile)

        view_report = None
        if vault is not None and view_path is not None:
            view_report = firstrun.first_view(vault, view_path, template=template)
            wizard.say(_view_line(view_report, vault.encrypted))
        sync_report = None
        if vault is not None and run_sync:
            which = "Sync" if synced else "First sync"
            wizard.say(f"{which} (Ctrl-C stops it; the next `mjvault sync` continues):")
            with (
                app.progress(None, "jobs", unit="job") as jobs_bar,
                app.progress(None, "download", unit="B") as bytes_bar,
            ):
                bytes_bar.unit_scale = True
                sync_report = firstrun.first_sync(
                    vault,
                    current.loaded,
                    token=token,
                    user_id=chosen_user_id,
                    on_job=lambda _job_id: jobs_bar.update(1),
                    on_bytes=bytes_bar.update,
                )
            wizard.say(
                f"{which}: {sync_report.jobs_new} {'new ' if synced else ''}jobs, "
                f"{sync_report.images_downloaded} images downloaded, "
                f"{sync_report.images_missing} missing."
            )

    wizard.heading("Saved")
    wizard.say(f"Settings: {config_file}" + (f" [profile.{profile}]" if profile else ""))
    if storage is TokenStorage.KEYRING:
        wizard.say("Session cookie: in the system keyring.")
    elif storage is TokenStorage.CONFIG:
        wizard.say(f"Session cookie: in {config_file} (readable by you only).")
    elif storage is TokenStorage.ENV:
        wizard.say("Session cookie: not saved. Before syncing: export MIDJOURNEY_SESSION_TOKEN=...")
    if view_report is not None:
        wizard.say(f"Your images: {view_report.directory} (view {view_report.view})")
    from mjvault.cli.invocation import program

    prefix = f"{program()} --profile {profile}" if profile else program()
    wizard.say("Next:")
    if storage is TokenStorage.ENV and new_token and not os.environ.get("MIDJOURNEY_SESSION_TOKEN"):
        # The cookie just tested was kept nowhere: a sync run next would have none.
        wizard.say(
            "  export MIDJOURNEY_SESSION_TOKEN=...           the cookie you pasted (not saved)"
        )
    if sync_report is None and not synced:
        sync_note = "fetch every job and image" + (", filling the view" if view_report else "")
    else:
        sync_note = "fetch what is new (run it regularly, see docs/usage.md)"
    wizard.say(f"  {prefix} sync                               {sync_note}")
    if view_report is None and not views:
        wizard.say(f"  {prefix} checkout ~/Pictures/Midjourney     browse them as files")
    else:
        wizard.say(f"  {prefix} checkout --list                    your views")
    wizard.say(f"  {prefix} config show                        all settings")

    created = state is not VaultState.EXISTING
    app.emit(
        {
            "profile": profile,
            "vault": str(path),
            "vault_created": created,
            "encrypted": bool(encrypt) if created else None,
            "config_file": str(config_file),
            "user_id": chosen_user_id,
            "token_storage": storage.value if storage else None,
            "connection": {"ok": result.ok, "message": result.message, "url": result.url},
            "view": _view_json(view_report),
            "first_sync": _sync_json(sync_report),
        },
        lambda: None,
    )
    if result.ok is False and not interactive:
        raise MjvaultError(
            f"connection test failed: {result.message}",
            hint="settings were saved; refresh the cookie and rerun `mjvault setup`",
        )
    if sync_report is not None and sync_report.missing:
        raise ExitStatus(EXIT_PARTIAL)


_LINK_WORDS = {
    "symlink": "symbolic links into the vault",
    "hardlink": "hard links into the vault",
    "reflink": "reflinked copies",
    "copy": "copies",
}


def _view_line(report: RefreshReport, encrypted: bool) -> str:
    if report.mode == "up-to-date":
        return f"The view {report.view} in {report.directory} is kept ({report.unchanged} files)."
    files = report.added + report.updated + report.unchanged
    how = _LINK_WORDS.get(report.link, report.link)
    if report.link == "copy" and encrypted:
        how += " (the vault is encrypted, so links could not show the images)"
    return f"View {report.view} in {report.directory}: {files} files, as {how}."


def _view_json(report: RefreshReport | None) -> dict[str, Any] | None:
    if report is None:
        return None
    return {
        "name": report.view,
        "directory": report.directory,
        "link": report.link,
        "files": report.added + report.updated + report.unchanged,
    }


def _sync_json(report: SyncReport | None) -> dict[str, Any] | None:
    if report is None:
        return None
    return {
        "jobs_new": report.jobs_new,
        "images_downloaded": report.images_downloaded,
        "images_missing": report.images_missing,
        "snapshot": report.snapshot,
    }
