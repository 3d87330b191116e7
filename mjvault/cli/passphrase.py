"""Where a passphrase comes from: MJVAULT_PASSPHRASE, --passphrase-file, or a prompt.

Never from argv: command lines are visible to every user of the machine through /proc.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable

import click

from mjvault.errors import PassphraseRequired

# A passphrase file holds one line; reading more (a wrong path such as /dev/zero or a disk
# image) would only burn memory before failing.
MAX_PASSPHRASE_FILE = 64 * 1024


def read_passphrase_file(path: str) -> str:
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_PASSPHRASE_FILE + 1)
    except OSError as exc:
        raise PassphraseRequired(f"cannot read passphrase file {path}: {exc.strerror}") from None
    if len(data) > MAX_PASSPHRASE_FILE:
        raise PassphraseRequired(
            f"passphrase file {path} is larger than {MAX_PASSPHRASE_FILE // 1024} KiB: "
            "is it the right file?"
        )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise PassphraseRequired(f"passphrase file {path} is not UTF-8 text") from None
    # A trailing newline is an editor's habit, not part of the secret.
    return text.rstrip("\r\n")


def passphrase_source(passphrase_file: str | None, *, confirm: bool = False) -> Callable[[], str]:
    """A callable the vault asks only when it really needs a passphrase."""

    def get() -> str:
        if passphrase_file:
            return read_passphrase_file(passphrase_file)
        from_env = os.environ.get("MJVAULT_PASSPHRASE")
        if from_env is not None:
            return from_env
        if not sys.stdin.isatty():
            raise PassphraseRequired(
                "this vault is encrypted and no passphrase was given",
                hint="set MJVAULT_PASSPHRASE or pass --passphrase-file FILE",
            )
        value: str = click.prompt(
            "Passphrase", hide_input=True, confirmation_prompt=confirm, err=True
        )
        return value

    return get
