"""The root `mjvault` command: global options, error mapping, and the command groups."""

from __future__ import annotations

import logging
import sys
import traceback
from importlib import import_module

import click

from mjvault import __version__
from mjvault.cli.context import AppContext
from mjvault.errors import EXIT_ERROR, EXIT_INTERRUPTED, MjvaultError

# Each entry: module under mjvault.cli, attribute holding the click command or group.
# One module per command group; adding a group is one line here.
COMMANDS: list[tuple[str, str]] = [
    ("init", "init_command"),
    ("ingest", "import_command"),
    ("inspect", "log_command"),
    ("inspect", "show_command"),
    ("inspect", "cat_command"),
    ("integrity", "verify_command"),
    ("integrity", "index_group"),
    ("gc", "gc_command"),
    ("gc", "forget_command"),
    ("keys", "key_group"),
    ("lock", "unlock_command"),
    ("devserver", "dev_server"),
    ("auth", "auth_group"),
    ("sync", "sync_command"),
]

EPILOG = """\b
Examples:
  mjvault init ~/mj-vault                 create a plain vault
  mjvault --vault ~/mj-vault import ~/old-archive
  mjvault log                             snapshots, newest first
  mjvault show 012e8f80-7e9b-48fe-8839-37a5b61a14aa
  mjvault verify --read-data              rehash every object
"""


@click.group(epilog=EPILOG, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="mjvault")
@click.option(
    "--vault",
    "vault_option",
    metavar="DIR",
    help="The vault to use (default: $MJVAULT_VAULT, else this or the nearest parent vault).",
)
@click.option("--json", "json_output", is_flag=True, help="Machine-readable JSON on stdout.")
@click.option("-v", "--verbose", count=True, help="More detail; -v shows tracebacks.")
@click.option("-q", "--quiet", is_flag=True, help="Only errors.")
@click.option("--log-file", type=click.Path(dir_okay=False), help="Also write logs to FILE.")
@click.option(
    "--passphrase-file",
    type=click.Path(dir_okay=False),
    help="Read an encrypted vault's passphrase from FILE (else $MJVAULT_PASSPHRASE, else a prompt).",
)
@click.pass_context
def cli(
    ctx: click.Context,
    vault_option: str | None,
    json_output: bool,
    verbose: int,
    quiet: bool,
    log_file: str | None,
    passphrase_file: str | None,
) -> None:
    """mjvault: a content-addressed, verifiable vault for Midjourney archives."""
    app = AppContext(
        vault_option=vault_option,
        json_output=json_output,
        verbosity=-1 if quiet else verbose,
        passphrase_file=passphrase_file,
    )
    ctx.obj = app
    ctx.call_on_close(app.close)
    _setup_logging(app.verbosity, log_file)


def _setup_logging(verbosity: int, log_file: str | None) -> None:
    level = logging.WARNING if verbosity <= 0 else logging.INFO if verbosity == 1 else logging.DEBUG
    if verbosity < 0:
        level = logging.ERROR
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_file:
        handlers.append(logging.FileHandler(log_file, encoding="utf-8"))
    logging.basicConfig(
        level=level,
        handlers=handlers,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        force=True,
    )


for _module, _attr in COMMANDS:
    cli.add_command(getattr(import_module(f"mjvault.cli.{_module}"), _attr))


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the CLI, turning expected failures into one line and an exit code."""
    show_traceback = any(a in ("-v", "-vv", "--verbose") for a in (argv or sys.argv[1:]))
    try:
        cli.main(args=argv, prog_name="mjvault", standalone_mode=False)
    except MjvaultError as err:
        if show_traceback:
            traceback.print_exc()
        click.echo(f"mjvault: error: {err}", err=True)
        sys.exit(err.exit_code)
    except click.exceptions.Abort:
        click.echo("mjvault: interrupted", err=True)
        sys.exit(EXIT_INTERRUPTED)
    except KeyboardInterrupt:
        click.echo("mjvault: interrupted; the vault is consistent, rerun to resume", err=True)
        sys.exit(EXIT_INTERRUPTED)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except BrokenPipeError:
        sys.exit(EXIT_ERROR)
    sys.exit(0)
