"""scripts/bench/bench_libraries.py at a toy size: it runs with or without the libraries."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "bench" / "bench_libraries.py"


def test_the_comparison_runs_and_tells_the_cookie_cases_apart() -> None:
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--names", "50", "--runs", "1"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr
    rows = dict(
        (line[:24].strip(), line[24:].split())
        for line in done.stdout.splitlines()
        if line.startswith(("no header line", "expiry 0", "#HttpOnly_ line"))
    )
    assert rows["no header line"] == ["1", "kept", "whole", "file", "refused"]
    assert rows["expiry 0 (session)"] == ["1", "kept", "0", "kept"]
    assert rows["#HttpOnly_ line"] == ["1", "kept,", "HttpOnly", "1", "kept"]
    for library in ("tenacity", "stamina", "filelock", "pathvalidate"):
        assert any(line.startswith(library) for line in done.stdout.splitlines())
    assert "Traceback" not in done.stderr
