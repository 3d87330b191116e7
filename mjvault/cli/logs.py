"""Logging for the command line: key=value lines on stderr (and --log-file), secrets masked.

A line reads ``2026-11-27T20:18:15Z level=warning logger=mjvault.sync msg="..." job=...``:
greppable by people, parseable by log collectors. Fields passed with ``extra={...}`` become
key=value pairs. Every handler carries :class:`RedactingFilter`, so no record — ours or a
library's such as httpx — writes a token, cookie value or passphrase.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from pathlib import Path

from mjvault.errors import UsageError
from mjvault.redact import redact

# A record whose words the terminal already shows (the command's one error line): it goes to
# --log-file only. Set as ``extra={ON_TERMINAL: True}``; never written as a field.
ON_TERMINAL = "on_terminal"
# Attributes every LogRecord has; anything else on a record came from `extra=` and is a field.
_STANDARD = frozenset(logging.makeLogRecord({}).__dict__) | {
    "message",
    "asctime",
    "taskName",
    ON_TERMINAL,
}


def _not_shown_yet(record: logging.LogRecord) -> bool:
    return not getattr(record, ON_TERMINAL, False)


def log_shown_line(level: int, message: str, **fields: object) -> None:
    """Log a line the terminal already shows, so that --log-file has it too (a scheduled
    run's error), without writing it twice on stderr."""
    root = logging.getLogger()
    if not root.handlers:
        return  # logging never set up (a usage error): Python's last resort would print it
    logging.getLogger("mjvault").log(level, message, extra={ON_TERMINAL: True, **fields})


def _quote(value: object) -> str:
    text = str(value)
    if text and not any(c in text for c in ' "=\n\t\\'):
        return text
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


class KeyValueFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(record.created))
        parts = [
            stamp,
            f"level={record.levelname.lower()}",
            f"logger={record.name}",
            f"msg={_quote(record.getMessage())}",
        ]
        parts += [f"{k}={_quote(v)}" for k, v in record.__dict__.items() if k not in _STANDARD]
        line = " ".join(parts)
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            line += "\n" + record.exc_text
        return line


class RedactingFilter(logging.Filter):
    """Masks secrets in the message, its fields and any traceback before a handler formats it."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = redact(record.getMessage())
        record.args = None
        for key, value in list(record.__dict__.items()):
            if key not in _STANDARD and isinstance(value, str):
                setattr(record, key, redact(value))
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


def level_for(verbosity: int) -> int:
    """-q: errors only; default: warnings; -v: info; -vv: debug."""
    if verbosity < 0:
        return logging.ERROR
    return {0: logging.WARNING, 1: logging.INFO}.get(verbosity, logging.DEBUG)


def _private_file_handler(path: str) -> logging.Handler:
    # Created owner-only: even masked, a log says what someone archives and when.
    from mjvault.cli.path_args import check_output_file

    if not path.strip():
        raise UsageError("--log-file was given an empty file name")
    target = Path(path).expanduser()
    check_output_file(Path(path), "the log file")
    try:
        if not target.exists():
            os.close(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600))
        return logging.FileHandler(target, encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot write the log file {path}: {exc.strerror}") from None


def setup_logging(verbosity: int, log_file: str | None = None) -> None:
    """Route all logging to stderr (and ``log_file``) as masked key=value lines.

    The file gets at least INFO whatever -q says: a cron job's log should say what happened.
    """
    level = level_for(verbosity)
    formatter = KeyValueFormatter()
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    handlers[0].setLevel(level)
    handlers[0].addFilter(_not_shown_yet)
    if log_file is not None:  # an empty name is refused, not taken for "no log file"
        file_handler = _private_file_handler(log_file)
        file_handler.setLevel(min(level, logging.INFO))
        handlers.append(file_handler)
    for handler in handlers:
        handler.setFormatter(formatter)
        handler.addFilter(RedactingFilter())
    root = logging.getLogger()
    for old in root.handlers[:]:
        root.removeHandler(old)
        old.close()
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(min(h.level for h in handlers))
    # httpx logs every request line at INFO; useful under -vv only.
    logging.getLogger("httpx").setLevel(logging.DEBUG if verbosity >= 2 else logging.WARNING)
