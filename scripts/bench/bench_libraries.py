#!/usr/bin/env python3
"""Four hand-written parts against the well-kept library that could replace each (issue 19).

    pip install tenacity stamina pathvalidate filelock   # into the bench's environment only
    python scripts/bench/bench_libraries.py [--names 20000] [--runs 5]

For each part it prints what the library would change and what it would cost:

- cookies.txt: ``parse_cookies_txt`` against the stdlib's ``http.cookiejar.MozillaCookieJar``
  on the export shapes real tools write (no header, ``#HttpOnly_``, expiry 0, a value with a
  tab, a dropped tab before an empty value, a bad line among good ones, lower-case flags, a
  host-only domain marked TRUE): cookies kept, or the whole file refused.
- retries: the import time ``tenacity`` or ``stamina`` would add to a command that already
  imports the Midjourney transport (least of ``--runs`` runs of ``python -X importtime``,
  cumulative microseconds of the library's top-level import after the transport's).
- file names: ``safe_component`` against ``pathvalidate.sanitize_filename`` (platform
  "universal", 255 bytes) on hostile names, and microseconds per name (best of 3) on
  ``--names`` printable-ASCII names and as many mixed Unicode ones.
- lock: the import time ``filelock`` would add to a writing command (after ``mjvault.lock``).

A library that is not installed is reported as such and its part skipped.
"""

from __future__ import annotations

import argparse
import http.cookiejar
import importlib.util
import logging
import os
import random
import re
import string
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from mjvault.sources.midjourney.auth import parse_cookies_txt  # noqa: E402
from mjvault.views.paths import safe_component  # noqa: E402

HEADER = "# Netscape HTTP Cookie File\n"
LINE = ".midjourney.com\tTRUE\t/\tTRUE\t1999999999\tname\tvalue\n"
COOKIE_CASES: dict[str, str] = {
    "plain export": HEADER + LINE,
    "no header line": LINE,
    "#HttpOnly_ line": HEADER + "#HttpOnly_" + LINE,
    "expiry 0 (session)": HEADER + LINE.replace("1999999999", "0"),
    "value with a tab": HEADER + LINE.replace("value", "va\tlue"),
    "tab dropped before ''": HEADER + LINE.replace("\tvalue", ""),
    "bad line among good": HEADER + "not a cookie\n" + LINE,
    "lower-case flags": HEADER + LINE.replace("TRUE", "true"),
    "host-only marked TRUE": HEADER + LINE.replace(".midjourney.com", "www.midjourney.com"),
}

HOSTILE_NAMES = [
    "CON",
    "com1.png",
    "nul .txt",
    "CONIN$",
    "..",
    "...",
    "",
    'a<b>c:d"e|f?g*h',
    "x\x00y",
    "\x85nel",
    "\u202eevil\u202dgnp.exe",
    "\ufeffbom",
    "e\u0301",
    "\ud800lone",
]


def cookies_part() -> None:
    print("## cookies.txt: parse_cookies_txt vs http.cookiejar.MozillaCookieJar")
    print(f"{'case':24} {'ours':>16} {'stdlib':>24}")
    for label, text in COOKIE_CASES.items():
        parsed = parse_cookies_txt(text)
        ours = f"{len(parsed)} kept" + (", HttpOnly" if any(c.http_only for c in parsed) else "")
        with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False, newline="") as f:
            f.write(text)
        jar = http.cookiejar.MozillaCookieJar()
        try:
            # The stdlib reports some bad lines as "http.cookiejar bug!" with a traceback on
            # stderr: keep it off the table.
            stderr, sys.stderr = sys.stderr, open(os.devnull, "w")  # noqa: SIM115
            try:
                jar.load(f.name, ignore_discard=True)
            finally:
                sys.stderr.close()
                sys.stderr = stderr
            http_only = sum(1 for c in jar if c.has_nonstandard_attr("HttpOnly"))
            theirs = f"{len(jar)} kept" + (", HttpOnly" if http_only else "")
        except http.cookiejar.LoadError:
            theirs = "whole file refused"
        finally:
            os.unlink(f.name)
        print(f"{label:24} {ours:>16} {theirs:>24}")
    print("(every case holds one cookie)\n")


def import_cost(module: str, after: str, runs: int) -> int | None:
    """Least cumulative import time (us) of ``module`` imported after ``after``."""
    if importlib.util.find_spec(module) is None:
        return None
    best: int | None = None
    pattern = re.compile(rf"\|\s*(\d+)\s*\|\s{{1,2}}{re.escape(module)}$")
    for _ in range(runs):
        done = subprocess.run(
            [sys.executable, "-X", "importtime", "-c", f"import {after}; import {module}"],
            capture_output=True,
            text=True,
            check=True,
            cwd=ROOT,
        )
        for line in done.stderr.splitlines():
            match = pattern.search(line)
            if match:
                value = int(match.group(1))
                best = value if best is None else min(best, value)
    return best


def imports_part(runs: int) -> None:
    print("## import time added (least of runs, cumulative us)")
    rows = [
        ("tenacity", "mjvault.sources.midjourney.transport"),
        ("stamina", "mjvault.sources.midjourney.transport"),
        ("filelock", "mjvault.lock"),
        ("pathvalidate", "mjvault.views.paths"),
    ]
    for module, after in rows:
        cost = import_cost(module, after, runs)
        shown = "not installed" if cost is None else f"{cost / 1000:.1f} ms"
        print(f"{module:14} after {after:40} {shown}")
    print()


def per_name(fn: Callable[[str], str], names: list[str]) -> float:
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        for name in names:
            fn(name)
        best = min(best, time.perf_counter() - started)
    return best / len(names) * 1e6


def names_part(count: int) -> None:
    print("## file names: safe_component vs pathvalidate.sanitize_filename")
    if importlib.util.find_spec("pathvalidate") is None:
        print("pathvalidate not installed\n")
        return
    from pathvalidate import sanitize_filename

    def theirs(name: str) -> str:
        return sanitize_filename(name, platform="universal", max_len=255)

    for name in HOSTILE_NAMES:
        try:
            shown = ascii(theirs(name))
        except (UnicodeError, ValueError) as exc:
            shown = f"raises {type(exc).__name__}"
        print(f"{ascii(name):28} ours {ascii(safe_component(name)):24} pathvalidate {shown}")
    rng = random.Random(19)
    ascii_names = [
        "".join(rng.choice(string.ascii_letters + string.digits + " -_") for _ in range(40))
        + ".png"
        for _ in range(count)
    ]
    mixed = [
        "".join(rng.choice("ae\u00e9\u732b<>:\u00fc ") for _ in range(40)) for _ in range(count)
    ]
    for label, names in (("printable ASCII", ascii_names), ("mixed Unicode", mixed)):
        ours = per_name(safe_component, names)
        other = per_name(theirs, names)
        print(f"{label:16} ours {ours:7.2f} us/name  pathvalidate {other:7.2f} us/name")
    print()


def main() -> None:
    logging.disable(logging.WARNING)  # parse_cookies_txt's "line skipped" warnings
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--names", type=int, default=20000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    cookies_part()
    imports_part(args.runs)
    names_part(args.names)


if __name__ == "__main__":
    main()
