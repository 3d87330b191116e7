#!/usr/bin/env python3
"""Run the fake Midjourney site in the foreground until Ctrl-C (same as `mjvault dev-server`).

    python scripts/fake_midjourney.py --jobs 3000 --seed 7 --port 8787 [fault options]
    python scripts/fake_midjourney.py --help

Prints `export MJVAULT_WEB_BASE=…` lines (web base, CDN base, token, user id) to paste into
the shell that runs the client.
"""

from __future__ import annotations

import sys

from mjvault.cli.main import main

if __name__ == "__main__":
    main(["dev-server", *sys.argv[1:]])
