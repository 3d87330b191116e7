"""The root `mjvault` command: global options, error mapping, and the command groups."""

from __future__ import annotations

import json
import os
import sys
import traceback
from collections.abc import Sequence
from importlib import import_module
from typing import Any

import click

from mjvault import __version__
from mjvault.cli.context import AppContext
from mjvault.cli.logs import setup_logging
from mjvault.config.resolve import register_environment_secrets
from mjvault.errors import EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, MjvaultError
from mjvault.redact import redact

# Each entry: command name -> (module under mjvault.cli, attribute holding the click command).
# One module per command group; adding a group is one line here.
COMMANDS: dict[str, tuple[str, str]] = {
    "init": ("init", "init_command"),
    "import": ("ingest", "import_command"),
    "log": ("inspect", "log_command"),
    "show": ("inspect", "show_command"),
    "cat": ("inspect", "cat_command"),
    "verify": ("integrity", "verify_command"),
    "index": ("integrity", "index_group"),
    "gc": ("gc", "gc_command"),
    "forget": ("gc", "forget_command"),
    "pack": ("pack", "pack_command"),
    "key": ("keys", "key_group"),
    "unlock": ("lock", "unlock_command"),
    "dev-server": ("devserver", "dev_server"),
    "auth": ("auth", "auth_group"),
    "sync": ("sync", "sync_command"),
    "config": ("config", "config"),
    "completion": ("completion", "completion"),
    "setup": ("setup", "setup"),
    "remote": ("remote", "remote_group"),
    "push": ("remote", "push_command"),
    "pull": ("remote", "pull_command"),
    "clone": ("remote", "clone_command"),
    "demo": ("demo", "demo_command"),
    "search": ("search", "search_command"),
    "export": ("export", "export_command"),
    "stats": ("stats", "stats_command"),
    "gallery": ("gallery", "gallery_command"),
    "checkout": ("checkout", "checkout_command"),
}


class ReaderLeft(Exception):
    """stdout's reader closed the pipe (`mjvault search fox | head -2`).

    click turns EPIPE into exit 1 itself, so the group hands it on under a name click leaves
    alone and main() answers it once, for every command: success, as cat and git do.
    """


class LazyGroup(click.Group):
    """Imports a command's module only when that command runs (or help lists them all).

    Importing every command group up front (httpx, the views, the remotes…) cost about 0.16 s
    of every invocation, a third of a small command's run time.
    """

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(COMMANDS))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in COMMANDS and cmd_name not in self.commands:
            module, attribute = COMMANDS[cmd_name]
            command = getattr(import_module(f"mjvault.cli.{module}"), attribute)
            self.add_command(command, cmd_name)
        return super().get_command(ctx, cmd_name)

    def make_context(self, *args: Any, **kwargs: Any) -> click.Context:
        try:  # --help and --version print while the arguments are parsed
            return super().make_context(*args, **kwargs)
        except BrokenPipeError as exc:
            raise ReaderLeft from exc

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except BrokenPipeError as exc:
            raise ReaderLeft from exc


EPILOG = """\b
Examples:
  mjvault setup                           first run: vault, cookie, connection test
  mjvault init ~/mj-vault                 create a plain vault
  mjvault --vault ~/mj-vault import ~/old-archive
  mjvault log                             snapshots, newest first
  mjvault show 012e8f80-7e9b-48fe-8839-37a5b61a14aa
  mjvault verify --read-data              rehash every object
  mjvault --profile work config show      effective settings of the `work` profile

\b
Exit codes: 0 ok, 1 error, 2 usage or configuration, 3 integrity problem,
4 partial success, 130 interrupted (docs/usage.md).
"""


@click.group(cls=LazyGroup, epilog=EPILOG, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="mjvault")
@click.option(
    "--vault",
    "vault_option",
    metavar="DIR",
    help="The vault to use (default: $MJVAULT_VAULT, else this or the nearest parent vault).",
)
@click.option(
    "--profile",
    metavar="NAME",
    help="Use the [profile.NAME] sections of the config files (default: $MJVAULT_PROFILE).",
)
@click.option("--json", "json_output", is_flag=True, help="Machine-readable JSON on stdout.")
@click.option("-v", "--verbose", count=True, help="More detail; -v shows tracebacks.")
@click.option("-q", "--quiet", is_flag=True, help="Only errors.")
@click.option("--no-color", is_flag=True, help="No colours (also: NO_COLOR=1).")
@click.option("--log-file", type=click.Path(dir_okay=False), help="Also write logs to FILE.")
@click.option(
    "--passphrase-file",
    type=click.Path(dir_okay=False),
    help="Read an encrypted vault's passphrase from FILE "
    "(else $MJVAULT_PASSPHRASE, else a prompt).",
)
@click.pass_context
def cli(
    ctx: click.Context,
    vault_option: str | None,
    profile: str | None,
    json_output: bool,
    verbose: int,
    quiet: bool,
    no_color: bool,
    log_file: str | None,
    passphrase_file: str | None,
) -> None:
    """mjvault: a content-addressed, verifiable vault for Midjourney archives."""
    # main() hands in the object so that it can still see --json and -v when a command fails.
    app = ctx.ensure_object(AppContext)
    app.vault_option = vault_option
    app.profile = profile
    app.json_output = json_output
    app.verbosity = -1 if quiet else verbose
    app.passphrase_file = passphrase_file
    ctx.call_on_close(app.close)
    register_environment_secrets(os.environ)
    setup_logging(app.verbosity, log_file)
    app.apply_output_settings(ctx, no_color=no_color)


def _wants_traceback(app: AppContext, argv: Sequence[str]) -> bool:
    if app.verbosity > 0:
        return True
    # The failure may come before the root options were applied (a bad option value).
    return any(a == "--verbose" or (a.startswith("-v") and set(a[1:]) == {"v"}) for a in argv)


def _json_error(app: AppContext, kind: str, message: str, hint: str | None, code: int) -> None:
    """Under --json a failure is also one JSON object on stdout (docs/usage.md)."""
    # A command that already printed its JSON answer (e.g. a status with ok: false) keeps
    # stdout one document; the error still goes to stderr as a line.
    if app.json_output and not app.emitted_json:
        error = {
            "type": kind,
            "message": redact(message),
            "hint": redact(hint) if hint else None,
            "exit_code": code,
        }
        click.echo(json.dumps({"error": error}, ensure_ascii=False))


def _fail(app: AppContext, err: MjvaultError, argv: Sequence[str]) -> None:
    if _wants_traceback(app, argv):
        click.echo(redact(traceback.format_exc()), err=True, nl=False)
    click.echo(f"mjvault: error: {redact(str(err))}", err=True)
    _json_error(app, type(err).__name__, err.message, err.hint, err.exit_code)
    sys.exit(err.exit_code)


def _detach_stdout() -> None:
    """Point stdout at /dev/null: what is still buffered for a reader that left goes nowhere,
    and Python's own flush at exit has nothing to complain about."""
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the CLI, turning expected failures into one line and an exit code."""
    try:
        _main(argv)
    finally:
        # Output into a pipe is buffered: a reader that left may show only in this last flush.
        # The exit code stays the command's own.
        try:
            sys.stdout.flush()
        except BrokenPipeError:
            _detach_stdout()


def _main(argv: list[str] | None) -> None:
    args = sys.argv[1:] if argv is None else argv
    app = AppContext()
    try:
        result = cli.main(args=args, prog_name="mjvault", standalone_mode=False, obj=app)
    except MjvaultError as err:
        _fail(app, err, args)
    except (click.exceptions.Abort, KeyboardInterrupt):
        # click turns Ctrl-C into Abort. Writers checkpoint on the way out, so say so.
        if _wants_traceback(app, args):
            click.echo(redact(traceback.format_exc()), err=True, nl=False)
        click.echo("mjvault: interrupted; the vault is consistent, rerun to resume", err=True)
        _json_error(app, "Interrupted", "interrupted", "rerun to resume", EXIT_INTERRUPTED)
        sys.exit(EXIT_INTERRUPTED)
    except click.ClickException as exc:
        # Usage errors (bad option, missing argument, no command) are click's and exit 2.
        exc.show()
        code = exc.exit_code or EXIT_USAGE
        _json_error(app, "UsageError", exc.format_message(), None, code)
        sys.exit(code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except (ReaderLeft, BrokenPipeError):
        # `mjvault log | head`: the reader left, having read what it wanted. Quiet, as cat and
        # git are.
        _detach_stdout()
        sys.exit(EXIT_OK)
    except OSError as exc:
        # Disk full, permission denied, a file where a folder should be: the system's own words
        # and the path, in one line. Writers have already checkpointed on the way out.
        where = f": {exc.filename}" if exc.filename else ""
        _fail(app, MjvaultError(f"{exc.strerror or exc}{where}"), args)
    # Without standalone mode, click returns ctx.exit(N)'s code instead of exiting.
    sys.exit(result if isinstance(result, int) else EXIT_OK)
