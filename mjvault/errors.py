"""Every expected failure is one of these: a one-line message and an exit code.

The CLI maps them to output; library callers catch them by type. Nothing else prints.
"""

from __future__ import annotations

# Documented exit codes (docs/usage.md). Kept stable: scripts depend on them.
EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_INTEGRITY = 3
EXIT_PARTIAL = 4
# The vault could not be opened at all, each for its own reason, so a script can tell
# them apart without reading the message (restic's 10, 11 and 12 mean the same).
EXIT_NO_VAULT = 10
EXIT_LOCKED = 11
EXIT_WRONG_PASSPHRASE = 12
EXIT_INTERRUPTED = 130


class ExitStatus(Exception):
    """A command that has said all it has to say and ends with ``code`` (a partial success,
    integrity problems found): the root command exits with it and prints nothing more."""

    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


class MjvaultError(Exception):
    """Base of all expected failures. ``str(err)`` is the one line shown to the user."""

    exit_code = EXIT_ERROR

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message} ({self.hint})"


class UsageError(MjvaultError):
    exit_code = EXIT_USAGE


class VaultNotFound(MjvaultError):
    """No vault at the given or discovered location."""

    exit_code = EXIT_NO_VAULT


class VaultExists(MjvaultError):
    """``init`` into a directory that already holds something."""


class UnsupportedFormat(MjvaultError):
    """The vault was written by a newer format version than this code understands."""


class VaultLocked(MjvaultError):
    """Another writer holds the vault's lock."""

    exit_code = EXIT_LOCKED


class KeysChanged(MjvaultError):
    """The vault's keys were rotated since this handle opened it: what it would write would
    be sealed under a retired secret, so it writes nothing (open the vault again)."""


class PassphraseRequired(MjvaultError):
    """An encrypted vault was opened without a way to get its passphrase."""


class WrongPassphrase(MjvaultError):
    """No key file of the vault opens with the given passphrase."""

    exit_code = EXIT_WRONG_PASSPHRASE


class ObjectNotFound(MjvaultError):
    exit_code = EXIT_INTEGRITY


class CorruptObject(MjvaultError):
    """An object failed its hash, its AEAD tag, or its framing."""

    exit_code = EXIT_INTEGRITY


class IntegrityError(MjvaultError):
    """A structural problem: a ref, manifest or tree that does not parse or points nowhere."""

    exit_code = EXIT_INTEGRITY


class JobNotFound(MjvaultError):
    pass


class VaultWriteError(MjvaultError):
    """Writing an object into the vault failed (disk full, I/O error): nothing is published."""


class ConfigError(MjvaultError):
    exit_code = EXIT_USAGE


class SourceError(MjvaultError):
    """The Midjourney source failed in a way a retry will not fix (auth, challenge page, …)."""


class AuthError(SourceError):
    """The session cookie is missing, expired or refused."""


class ChallengeError(SourceError):
    """Cloudflare answered with its browser challenge instead of the API or the image."""


class SourceUnavailable(SourceError):
    """Too many failures in a row: the client stopped instead of hammering the service."""


class DownloadError(SourceError):
    """One file could not be fetched intact; a sync records it and goes on with the others."""


class CdnRefused(DownloadError):
    """The CDN turned the request away (401/403): every other file would fail the same way."""


class Interrupted(MjvaultError):
    exit_code = EXIT_INTERRUPTED
    #: What the stopped run had stored when it knows (a sync's SyncReport), else None.
    report: object = None
