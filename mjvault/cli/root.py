"""The root `mjvault` command: global options, the command groups, and error mapping."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Sequence
from importlib import import_module
from typing import TYPE_CHECKING, Any, NamedTuple

import click

from mjvault import __version__
from mjvault.cli.context import AppContext, give_every_command_json, json_option
from mjvault.cli.main import detach_stdout
from mjvault.errors import EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, ExitStatus, MjvaultError

if TYPE_CHECKING:
    from click.shell_completion import CompletionItem

# Only click and the modules above load before a command is chosen: `--help` imports
# nothing else, and a command imports its own module and what it needs (issue 12,
# start-up). tests/test_startup.py holds them to it.


class LazyCommand(NamedTuple):
    module: str  # under mjvault.cli
    attribute: str  # the click command in that module
    summary: str  # its one-line help as `mjvault --help` lists it, so listing imports nothing


# One module per command group; adding a command is one line here. A test checks each
# summary against the command's own help.
COMMANDS: dict[str, LazyCommand] = {
    "init": LazyCommand(
        "init",
        "init_command",
        "Create a new, empty vault in DIRECTORY (default: --vault, else the current directory).",
    ),
    "import": LazyCommand(
        "ingest",
        "import_command",
        "Import an archive written by the original midjourney-archiver scripts.",
    ),
    "log": LazyCommand(
        "inspect", "log_command", "List snapshots, newest first, with their job and image counts."
    ),
    "show": LazyCommand(
        "inspect",
        "show_command",
        "Show one job: its prompt, parameters and images (JOB_ID may be a unique prefix).",
    ),
    "cat": LazyCommand(
        "inspect",
        "cat_command",
        "Print an object's plaintext (verified) to stdout; records and manifests as JSON.",
    ),
    "verify": LazyCommand(
        "integrity",
        "verify_command",
        "Check that every snapshot is whole and every object is what its name says.",
    ),
    "index": LazyCommand(
        "integrity",
        "index_group",
        "The LMDB index: a cache of HEAD that can always be rebuilt from the objects.",
    ),
    "gc": LazyCommand(
        "gc", "gc_command", "Remove objects no snapshot, unfinished sync or view refers to."
    ),
    "forget": LazyCommand(
        "gc",
        "forget_command",
        "Forget snapshots by a keep policy or by id, or remove jobs from every snapshot.",
    ),
    "pack": LazyCommand(
        "pack",
        "pack_command",
        "Move loose records and tree nodes into packs, and merge small packs.",
    ),
    "key": LazyCommand("keys", "key_group", "Manage the passphrases that open an encrypted vault."),
    "unlock": LazyCommand(
        "lock", "unlock_command", "Remove a stale lock left by a process that died."
    ),
    "dev-server": LazyCommand(
        "devserver", "dev_server", "Serve a generated Midjourney account on 127.0.0.1 until Ctrl-C."
    ),
    "auth": LazyCommand(
        "auth", "auth_group", "Manage the Midjourney session used by `mjvault sync`."
    ),
    "sync": LazyCommand(
        "sync",
        "sync_command",
        "Fetch every job of your Midjourney account — records, full-size images and videos.",
    ),
    "config": LazyCommand(
        "config", "config", "Settings: defaults < /etc < user file < vault < MJVAULT_* < options."
    ),
    "completion": LazyCommand(
        "completion", "completion", "Print the completion script for SHELL (bash, zsh or fish)."
    ),
    "setup": LazyCommand(
        "setup",
        "setup",
        "Set up mjvault: a vault, your Midjourney login, a connection test, a first view.",
    ),
    "remote": LazyCommand(
        "remote",
        "remote_group",
        "Named offsite copies: folders (drives, NAS) and S3-compatible object stores.",
    ),
    "push": LazyCommand(
        "remote", "push_command", "Upload to remote NAME every object and snapshot it lacks."
    ),
    "pull": LazyCommand(
        "remote",
        "pull_command",
        "Fetch from remote NAME the snapshots and objects this vault lacks.",
    ),
    "clone": LazyCommand(
        "remote",
        "clone_command",
        "Make DIRECTORY a complete vault from the remote at URL alone (index included).",
    ),
    "demo": LazyCommand(
        "demo",
        "demo_command",
        "Try `mjvault sync` offline: serve a generated Midjourney account on 127.0.0.1 and sync it into a vault (default ./mjvault-demo, created or reused).",
    ),
    "search": LazyCommand(
        "search", "search_command", "Search the vault's jobs (see the query language below)."
    ),
    "export": LazyCommand(
        "export",
        "export_command",
        "Export one row per job: id, time, type, prompt, full command, parameters, image object ids and view paths.",
    ),
    "stats": LazyCommand(
        "stats",
        "stats_command",
        "Activity (per month, week, hour and weekday, streaks, sessions), model versions and parameters over time, top, rising and falling prompt terms, follow-ups, ratings and a cost estimate; storage (objects, bytes, dedup savings, metadata compression) and snapshot history.",
    ),
    "report": LazyCommand(
        "report",
        "report_command",
        "Write the vault's insights to FILE: an HTML page that needs nothing else (charts inline, no network; it reads on a phone), or with --format pdf|png|svg the charts alone.",
    ),
    "gallery": LazyCommand(
        "gallery",
        "gallery_command",
        "Write a static HTML gallery into DIRECTORY: thumbnails, search as you type, and a lightbox with each image's prompt, parameters and date.",
    ),
    "serve": LazyCommand(
        "serve",
        "serve_command",
        "Run the web app on this machine: browse, search and manage the vault in a browser.",
    ),
    "thumbs": LazyCommand(
        "thumbs",
        "thumbs_command",
        "Make the missing thumbnails and perceptual hashes of HEAD's images.",
    ),
    "embed": LazyCommand(
        "embed",
        "embed_command",
        "Compute image embeddings with an ONNX model you supply, for `search --semantic`.",
    ),
    "similar": LazyCommand(
        "similar",
        "similar_command",
        "The images nearest to an image (by perceptual hash or meaning), or the jobs nearest a "
        "prompt.",
    ),
    "dupes": LazyCommand(
        "similar",
        "dupes_command",
        "Groups of near-duplicate images, the best original of each marked (nothing deleted).",
    ),
    "collection": LazyCommand(
        "collection",
        "collection_group",
        "Named sets of jobs kept in the vault: list, show, add, remove, delete.",
    ),
    "schedule": LazyCommand(
        "schedule",
        "schedule_group",
        "Run `mjvault sync` of this vault on a schedule: systemd, cron, launchd or Windows.",
    ),
    "notify": LazyCommand(
        "notify",
        "notify_group",
        "Notifications after a sync, on failures, on verify problems and failed pushes.",
    ),
    "checkout": LazyCommand(
        "checkout",
        "checkout_command",
        "Materialise a view of the vault's images in DIR, or refresh every view.",
    ),
}


class ReaderLeft(Exception):
    """stdout's reader closed the pipe (`mjvault search fox | head -2`).

    click turns EPIPE into exit 1 itself, so the group hands it on under a name click leaves
    alone and main() answers it once, for every command: success, as cat and git do.
    """


class LazyGroup(click.Group):
    """Imports a command's module only when that command runs.

    Importing every command group up front (httpx, the views, the remotes…) cost about 0.16 s
    of every invocation, a third of a small command's run time. `--help` and shell completion
    of command names list the summaries of COMMANDS instead of importing every module.
    """

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(COMMANDS))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in COMMANDS and cmd_name not in self.commands:
            module, attribute, _summary = COMMANDS[cmd_name]
            command = getattr(import_module(f"mjvault.cli.{module}"), attribute)
            self.add_command(command, cmd_name)
        found = super().get_command(ctx, cmd_name)
        if found is not None:
            give_every_command_json(found)
        return found

    def command_summary(self, ctx: click.Context, cmd_name: str, limit: int) -> str | None:
        """A command's one-line help, shortened to ``limit`` as click shortens it; None for a
        hidden command."""
        if cmd_name in COMMANDS:
            # click's own shortening of the summary (the first sentence of the help) gives
            # what it gives for the whole help text.
            return click.Command(cmd_name, help=COMMANDS[cmd_name].summary).get_short_help_str(
                limit
            )
        command = self.get_command(ctx, cmd_name)
        if command is None or command.hidden:
            return None
        return command.get_short_help_str(limit)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        names = self.list_commands(ctx)
        limit = formatter.width - 6 - max(len(name) for name in names)
        rows = [(name, self.command_summary(ctx, name, limit)) for name in names]
        with formatter.section("Commands"):
            formatter.write_dl([(name, text) for name, text in rows if text is not None])

    def shell_complete(self, ctx: click.Context, incomplete: str) -> list[CompletionItem]:
        from click.shell_completion import CompletionItem

        names = [name for name in self.list_commands(ctx) if name.startswith(incomplete)]
        items = [(name, self.command_summary(ctx, name, 45)) for name in names]
        # Command's completion (the group's options) without Group's, which imports every
        # command it offers.
        return [CompletionItem(name, help=text) for name, text in items if text is not None] + (
            click.Command.shell_complete(self, ctx, incomplete)
        )

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
4 partial success, 10 no vault, 11 vault locked, 12 wrong passphrase,
130 interrupted (docs/usage.md).
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
@json_option
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
    app.verbosity = -1 if quiet else verbose
    app.passphrase_file = passphrase_file
    ctx.call_on_close(app.close)
    # Here, not at the top: `--version` and `--help` never get this far.
    from mjvault.cli.logs import setup_logging
    from mjvault.config.resolve import register_environment_secrets

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
        import json

        from mjvault.redact import redact

        error = {
            "type": kind,
            "message": redact(message),
            "hint": redact(hint) if hint else None,
            "exit_code": code,
        }
        click.echo(json.dumps({"error": error}, ensure_ascii=False))


def _echo_traceback(app: AppContext, argv: Sequence[str]) -> None:
    """The traceback of the exception being handled, secrets masked, when -v asked for it."""
    if _wants_traceback(app, argv):
        import traceback

        from mjvault.redact import redact

        click.echo(redact(traceback.format_exc()), err=True, nl=False)


def _fail(app: AppContext, err: MjvaultError, argv: Sequence[str]) -> None:
    from mjvault.cli.logs import log_shown_line
    from mjvault.redact import redact

    _echo_traceback(app, argv)
    click.echo(f"mjvault: error: {redact(str(err))}", err=True)
    log_shown_line(logging.ERROR, str(err), error=type(err).__name__, exit=err.exit_code)
    _json_error(app, type(err).__name__, err.message, err.hint, err.exit_code)
    sys.exit(err.exit_code)


def run(args: list[str]) -> None:
    """Run the CLI on ``args``, turning expected failures into one line and an exit code;
    always exits."""
    app = AppContext()
    try:
        result = cli.main(args=args, prog_name="mjvault", standalone_mode=False, obj=app)
    except ExitStatus as status:
        # The command has printed its report; only the code is left to give.
        sys.exit(status.code)
    except MjvaultError as err:
        _fail(app, err, args)
    except (click.exceptions.Abort, KeyboardInterrupt):
        # click turns Ctrl-C into Abort. Writers checkpoint on the way out, so say so.
        _echo_traceback(app, args)
        click.echo("mjvault: interrupted; the vault is consistent, rerun to resume", err=True)
        from mjvault.cli.logs import log_shown_line

        log_shown_line(logging.WARNING, "interrupted", exit=EXIT_INTERRUPTED)
        _json_error(app, "Interrupted", "interrupted", "rerun to resume", EXIT_INTERRUPTED)
        sys.exit(EXIT_INTERRUPTED)
    except click.ClickException as exc:
        # Usage errors (bad option, missing argument, no command) are click's and exit 2.
        exc.show()
        code = exc.exit_code or EXIT_USAGE
        # `--json` after a command name is parsed with that command's options, which click
        # may have refused before it read the flag: asked for anywhere, the error is JSON.
        app.json_output = app.json_output or "--json" in args
        _json_error(app, "UsageError", exc.format_message(), None, code)
        sys.exit(code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except (ReaderLeft, BrokenPipeError):
        # `mjvault log | head`: the reader left, having read what it wanted. Quiet, as cat and
        # git are.
        detach_stdout()
        sys.exit(EXIT_OK)
    except OSError as exc:
        # Disk full, permission denied, a file where a folder should be: the system's own words
        # and the path, in one line. Writers have already checkpointed on the way out.
        where = f": {exc.filename}" if exc.filename else ""
        _fail(app, MjvaultError(f"{exc.strerror or exc}{where}"), args)
    # Without standalone mode, click returns ctx.exit(N)'s code instead of exiting.
    sys.exit(result if isinstance(result, int) else EXIT_OK)
