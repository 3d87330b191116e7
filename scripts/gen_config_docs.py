#!/usr/bin/env python3
"""Write docs/configuration.md from the settings schema; `--check` only compares (exit 1 if stale)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mjvault.config.reference import render_reference

DOC = Path(__file__).resolve().parent.parent / "docs" / "configuration.md"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="fail when the file is out of date")
    args = parser.parse_args()
    text = render_reference()
    if args.check:
        if not DOC.exists() or DOC.read_text(encoding="utf-8") != text:
            print(f"{DOC} is out of date: run scripts/gen_config_docs.py", file=sys.stderr)
            return 1
        return 0
    DOC.write_text(text, encoding="utf-8")
    print(f"wrote {DOC}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
