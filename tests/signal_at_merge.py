"""``mjvault ARGS`` with a SIGTERM or SIGINT sent to itself while a sync merges its run's packs.

The merge runs after the snapshot is published and swallows the KeyboardInterrupt the stop
signal raises (writer.py): the command must still stop. No real stop can be timed to land
there, so the merge is wrapped to send the signal at its start.
"""

from __future__ import annotations

import os
import signal
import sys
import time

import mjvault.writer as writer
from mjvault.cli.root import run

SIGNAL = signal.Signals[os.environ.pop("SIGNAL_AT_MERGE", "SIGTERM")]
real = writer.merge_run_packs
sent: list[bool] = []


def merge_with_a_stop(*args: object, **kwargs: object) -> object:
    if not sent:
        sent.append(True)
        os.kill(os.getpid(), SIGNAL)
        time.sleep(0.2)  # the handler runs here, inside the merge's try
    return real(*args, **kwargs)  # type: ignore[arg-type]


writer.merge_run_packs = merge_with_a_stop  # type: ignore[assignment]
run(sys.argv[1:])
