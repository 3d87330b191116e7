"""The `mjvault` program's entry point: `--version` at once, anything else through click.

`mjvault --version` is answered here, before click and the command tree are imported, which
would triple its time (issue 12, start-up); its output is click's ``version_option``'s.
Everything else, `mjvault --vault X --version` included, goes to :mod:`mjvault.cli.root`.
"""

from __future__ import annotations

import os
import sys

# click's variable for shell completion (`_MJVAULT_COMPLETE=bash_complete mjvault …`).
COMPLETE_VAR = "_MJVAULT_COMPLETE"


def detach_stdout() -> None:
    """Point stdout at /dev/null: what is still buffered for a reader that left goes nowhere,
    and Python's own flush at exit has nothing to complain about."""
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the CLI, turning expected failures into one line and an exit code."""
    args = sys.argv[1:] if argv is None else argv
    try:
        if args == ["--version"] and COMPLETE_VAR not in os.environ:
            from mjvault import __version__

            try:
                sys.stdout.write(f"mjvault, version {__version__}\n")
                sys.stdout.flush()
            except BrokenPipeError:  # `mjvault --version | true`: quiet, as click's path is
                detach_stdout()
            sys.exit(0)
        from mjvault.cli.root import run

        run(args)
    finally:
        # Output into a pipe is buffered: a reader that left may show only in this last flush.
        # The exit code stays the command's own.
        try:
            sys.stdout.flush()
        except BrokenPipeError:
            detach_stdout()
