#!/usr/bin/env python3
"""Report benchmark: the insights report (HTML with inline SVG, PDF, PNG, SVG) drawn by
matplotlib from a generated document of several years, beside the chart ``stats --chart``
drew by hand before (Pillow PNG and hand-built SVG page, from ``--anchor-ref``'s
mjvault/find/stats.py), each a child process with its own peak RSS.

    python scripts/bench/bench_report.py [--years 3] [--runs 5] [--anchor-ref main]

Each run, alternating so drift on a shared machine hits all alike, one child a format: Python
start, imports, the drawing and the bytes, written nowhere. Seconds and peak RSS, best and
median of the runs. The document is the insights document's shape (docs/usage.md) with a
job most days; the chart's size depends on the months and days, not on the jobs.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]

RENDER = """
import json, sys
from mjvault.insights.render.report import render
doc = json.load(open(sys.argv[1]))
sys.stdout.write(str(len(render(doc, sys.argv[2]))))
"""

ANCHOR = """
import json, sys, types
source = open(sys.argv[3]).read()
module = types.ModuleType("old_stats")
exec(compile(source, "old_stats.py", "exec"), module.__dict__)
doc = json.load(open(sys.argv[1]))
old = {"jobs": doc["totals"]["jobs"], "images": doc["totals"]["images"], "missing_images": 0,
       "first": doc["totals"]["first"], "last": doc["totals"]["last"],
       "per_month": doc["activity"]["per_month"], "by_type": {}, "by_version": {},
       "top_words": [], "top_params": []}
out = module.chart_png(old) if sys.argv[2] == "old-png" else module.chart_html(old).encode()
sys.stdout.write(str(len(out)))
"""


def document(years: int) -> dict[str, Any]:
    """A document of ``years`` years, a job most days, with every section filled: weeks,
    follow-ups, ratings and signature terms a month, six parameters and four job types."""
    doc = _base_document(years)
    weeks: dict[str, list[int]] = {}
    for d in doc["activity"]["per_day"]:
        year, week, _ = date.fromisoformat(d["day"]).isocalendar()
        w = weeks.setdefault(f"{year}-W{week:02d}", [0, 0])
        w[0] += d["jobs"]
        w[1] += d["images"]
    doc["activity"]["per_week"] = [
        {"week": k, "jobs": v[0], "images": v[1]} for k, v in sorted(weeks.items())
    ]
    months = doc["activity"]["per_month"]
    params = ("ar", "stylize", "chaos", "raw", "sref", "quality")
    doc["evolution"]["params"] = [
        {
            "month": m["month"],
            "jobs": m["jobs"],
            "count": {p: m["jobs"] // (i + 1) for i, p in enumerate(params)},
            "share": {p: round(1 / (i + 1), 4) for i, p in enumerate(params)},
        }
        for m in months
    ]
    doc["evolution"]["follow_ups"]["per_month"] = [
        {"month": m["month"], "grids": m["jobs"] // 2, "follow_ups": m["jobs"] // 3} for m in months
    ]
    doc["ratings"]["per_month"] = [
        {"month": m["month"], "liked": m["jobs"] // 20, "ranked": m["jobs"] // 10,
         "mean_rank": 3.5}
        for m in months
    ]  # fmt: skip
    doc["terms"]["signature"] = [
        {"month": m["month"], "terms": [{"term": "fox", "count": 3, "g2": 12.0}]} for m in months
    ]
    doc["types"] = {
        "per_month": [
            {
                "month": m["month"],
                "jobs": {
                    "grid": m["jobs"] // 2,
                    "upscale": m["jobs"] // 3,
                    "variation": m["jobs"] // 8,
                    "video": m["jobs"] // 20,
                },
            }  # fmt: skip
            for m in months
        ]
    }
    return doc


def _base_document(years: int) -> dict[str, Any]:
    """The activity, models, terms and cost of :func:`document`."""
    first = date(2025 - years, 1, 1)
    days = []
    for i in range(365 * years):
        jobs = (i * 7919) % 13 if i % 5 else 0
        days.append(
            {"day": (first + timedelta(days=i)).isoformat(), "jobs": jobs, "images": 4 * jobs}
        )
    months: dict[str, list[int]] = {}
    for d in days:
        m = months.setdefault(d["day"][:7], [0, 0])
        m[0] += d["jobs"]
        m[1] += d["images"]
    per_month = [{"month": k, "jobs": v[0], "images": v[1]} for k, v in sorted(months.items())]
    models = ["v 5.2", "v 6", "v 6.1", "v 7", "niji 5", "niji 6", "default", "v 4"]
    share = {m["month"]: {name: round(1 / len(models), 4) for name in models} for m in per_month}
    cost_pm = [
        {"month": m["month"], "gpu_minutes": m["jobs"] * 1.0, "fast_minutes": m["jobs"] * 0.5,
         "cost": round(m["jobs"] * 0.5 * 4 / 60, 4)}
        for m in per_month
    ]  # fmt: skip
    jobs = sum(d["jobs"] for d in days)
    return {
        "v": 1,
        "filter": {"since": None, "until": None, "query": None},
        "totals": {
            "jobs": jobs,
            "images": 4 * jobs,
            "undated": 0,
            "first": days[0]["day"],
            "last": days[-1]["day"],
            "days_active": sum(1 for d in days if d["jobs"]),
        },  # fmt: skip
        "activity": {
            "per_day": days,
            "per_week": [],
            "per_month": per_month,
            "heatmap": [
                {
                    "day": d["day"],
                    "weekday": date.fromisoformat(d["day"]).weekday(),
                    "jobs": d["jobs"],
                    "level": min(4, (d["jobs"] + 2) // 3),
                }
                for d in days
            ],  # fmt: skip
            "streaks": {
                "longest": {"days": 4, "start": days[1]["day"], "end": days[4]["day"]},
                "current": {"days": 0, "start": None, "end": None},
            },  # fmt: skip
            "hour_weekday": [[(h * 7 + w) % 11 for w in range(7)] for h in range(24)],
            "sessions": {"count": 100, "gap_minutes": 30, "mean_jobs": 5.0, "longest_jobs": 40},
        },
        "evolution": {
            "models": [
                {"month": m["month"], "jobs": m["jobs"], "share": share[m["month"]]}
                for m in per_month
            ],
            "params": [
                {
                    "month": m["month"],
                    "jobs": m["jobs"],
                    "count": {"ar": m["jobs"]},
                    "share": {"ar": 1.0},
                }
                for m in per_month
            ],  # fmt: skip
            "prompt_words": [{"month": m["month"], "mean": 15.0} for m in per_month],
            "follow_ups": {
                "grids": jobs,
                "grids_followed": jobs // 3,
                "share": 0.3333,
                "per_month": [],
            },
        },
        "terms": {
            "top": [{"month": m["month"], "terms": [["fox", 3]]} for m in per_month],
            "trends": [],
            "threshold": {"g2": 10.83, "p": 0.001},
            "signature": [],
        },  # fmt: skip
        "ratings": {
            "jobs_with_record_fields": jobs,
            "liked": 0,
            "liked_share": 0.0,
            "ranking": {},
            "per_month": [],
        },  # fmt: skip
        "cost": {
            "estimate": True,
            "currency": "USD",
            "price_per_fast_hour": 4.0,
            "table": {"price_per_fast_hour": 4.0},
            "gpu_minutes": float(jobs),
            "total": round(sum(m["cost"] for m in cost_pm), 4),
            "per_month": cost_pm,
        },  # fmt: skip
    }


def child(code: str, *args: str) -> tuple[float, int, int]:
    """Seconds, peak RSS (KiB) and the byte count the child printed."""
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", code, *args], stdout=subprocess.PIPE, cwd=ROOT)
    assert proc.stdout is not None
    out = proc.stdout.read()
    _pid, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"child failed: {args}")
    return seconds, usage.ru_maxrss, int(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--years", type=int, default=3)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--anchor-ref", default="main")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as work:
        doc_path = Path(work) / "doc.json"
        doc_path.write_text(json.dumps(document(args.years)))
        old = Path(work) / "old_stats.py"
        old.write_bytes(
            subprocess.run(
                ["git", "show", f"{args.anchor_ref}:mjvault/find/stats.py"],
                cwd=ROOT, check=True, capture_output=True,
            ).stdout
        )  # fmt: skip
        cases = [("old-png", ANCHOR), ("old-html", ANCHOR)] + [
            (fmt, RENDER) for fmt in ("html", "pdf", "png", "svg")
        ]
        results: dict[str, list[tuple[float, int, int]]] = {name: [] for name, _ in cases}
        for _ in range(args.runs):
            for name, code in cases:
                results[name].append(child(code, str(doc_path), name, str(old)))
    print(
        f"{args.years} years, {args.runs} runs; seconds best/median, peak RSS MiB best/median, bytes"
    )
    for name, rows in results.items():
        secs = [r[0] for r in rows]
        rss = [r[1] / 1024 for r in rows]
        print(
            f"  {name:<9} {min(secs):6.2f} {statistics.median(secs):6.2f}   "
            f"{min(rss):6.1f} {statistics.median(rss):6.1f}   {rows[0][2]:>9}"
        )


if __name__ == "__main__":
    main()
