#!/usr/bin/env python3
"""Search benchmark: mjvault's search side by side with SQLite FTS5 over the same jobs.

    python scripts/bench/bench_search.py [--jobs 100000] [--queries 300] [--rounds 3]
        [--mix words|phrases|prefixes|exclusions|all] [--sort newest|oldest|relevance]
        [--command-runs 10] [--workdir DIR]

Builds (once, cached in WORKDIR) a vault of ``--jobs`` generated jobs — records only, no
images — through the ordinary writer, so the index is the one `mjvault` keeps, and beside it
(``fts-JOBS.sqlite``) the same jobs' prompts in an FTS5 table with the filters' columns in an
ordinary table (``search_sqlite.py``: what a user could script instead). Both are built
streaming, one job at a time, so a million jobs cost no more memory than a thousand.

Then ``--queries`` random queries of two prompt words and one filter (type, aspect, version,
niji, style, a stylize comparison or a month range) — or a phrase, a prefix or an exclusion
with ``--mix`` — run through both engines in this process, alternating query by query
(mjvault's ``search`` on the parsed text, as the CLI does after start-up; then the translated
SQL statement), for ``--rounds`` rounds. Every answer of the first round is checked: the
totals and the ``--limit`` ids must agree, and the first disagreements are printed (they are
findings about one engine or the other). Prints p50/p95 per engine per round and their ratio,
the best and median over rounds, index bytes per job and the peak RSS.

Last, the whole command: ``mjvault search WORD WORD`` (the installed CLI) against a ten-line
``python -c`` script doing the same with sqlite3, alternating, ``--command-runs`` times each.
Targets (issue 12): p50 and p95 at most 1.0× FTS5's, at 100k and at 1M jobs.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import search_sqlite  # noqa: E402  (beside this script)

from mjvault import Vault  # noqa: E402
from mjvault.index.db import Index  # noqa: E402
from mjvault.testing.rusage import launched, read_usage  # noqa: E402

FILTERS = (
    "type:upscale",
    "type:diffusion",
    "ar:16:9",
    "ar:2:3",
    "v:6",
    "v:5.2",
    "niji:6",
    "style:raw",
    "s>100",
    "s<=50",
    "since:2025-01",
    "date:2024-06",
)
FORMS = ("words", "phrases", "prefixes", "exclusions")
SHOWN_DISAGREEMENTS = 5

# What a user would run instead of `mjvault search W1 W2`: the count and the newest 50, one
# line each, from the file bench_search builds. argv: the file, then the words.
SQLITE_SCRIPT = """\
import sqlite3, sys, datetime
db = sqlite3.connect(f"file:{sys.argv[1]}?mode=ro", uri=True)
q = " ".join('"%s"' % w.replace('"', '""') for w in sys.argv[2:])
sql = ("SELECT j.id, j.time, j.type, f.prompt, count(*) OVER () FROM fts f CROSS JOIN jobs j"
       " ON j.rowid = f.rowid WHERE fts MATCH ? ORDER BY j.time DESC, j.id DESC LIMIT 50")
rows = db.execute(sql, (q,)).fetchall()
for i, t, ty, p, n in rows:
    day = datetime.datetime.fromtimestamp(t / 1e6, datetime.UTC).strftime("%Y-%m-%d")
    print(i[:8], day, f"{ty:12.12}", " ".join(p.split())[:80])
print(rows[0][4] if rows else 0, "jobs", file=sys.stderr)
"""


def build(vault_dir: Path, jobs: int) -> float:
    """The benchmark's vault, through the writer; Account.generate's jobs, drawn one at a time
    (the vault is the same one a list of them gave: same records, same generations).

    A vault left short by a stopped build (hours at a million jobs) is written to again: the
    jobs it holds are counted unchanged, its checkpoints are not lost."""
    from mjvault.testing.accounts import Account

    started = time.perf_counter()
    vault = Vault.open(vault_dir) if (vault_dir / "config").exists() else Vault.init(vault_dir)
    with vault.writer("bench", checkpoint_jobs=20_000) as writer:
        for oldest_first, job in enumerate(Account.stream(1, jobs)):
            newest_first = jobs - 1 - oldest_first  # the position the generation is chosen by
            writer.add_job(json.dumps(job.record(1 + newest_first % 3)).encode(), [])
    vault.close()
    return time.perf_counter() - started


def percentile(values: Sequence[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def vocabulary(index: Index) -> tuple[list[str], list[str]]:
    """Words and two-word phrases as they occur in the first 5,000 jobs, each in at least 5:
    a random query word is as common as words in prompts are."""
    from mjvault.text import search_tokens

    words: Counter[str] = Counter()
    pairs: Counter[str] = Counter()
    for n, summary in enumerate(index.iter_summaries()):
        if n >= 5000:
            break
        tokens = search_tokens(summary.prompt)
        words.update(set(tokens))
        pairs.update({f"{a} {b}" for a, b in zip(tokens, tokens[1:], strict=False)})
    # Sorted: a Counter fed from sets lists them in an order that changes with the process's
    # hash seed, and the same seeded draws must give the same queries in every run.
    keep = sorted(w for w, c in words.items() if c >= 5 and len(w) > 1)
    phrases = sorted(p for p, c in pairs.items() if c >= 5 and all(len(w) > 1 for w in p.split()))
    return keep, phrases


def make_queries(count: int, mix: str, words: list[str], phrases: list[str]) -> list[str]:
    rng = random.Random(42)
    forms = FORMS if mix == "all" else (mix,)
    queries = []
    for i in range(count):
        form = forms[i % len(forms)]
        if form == "words":
            queries.append(f"{rng.choice(words)} {rng.choice(words)} {rng.choice(FILTERS)}")
        elif form == "phrases":
            queries.append(f'"{rng.choice(phrases)}" {rng.choice(FILTERS)}')
        elif form == "prefixes":
            word = rng.choice([w for w in words if len(w) >= 4])
            stem = word[:4] if len(word) > 4 else word[:3]
            queries.append(f"{rng.choice(words)} {stem}* {rng.choice(FILTERS)}")
        else:
            first, second, third = rng.sample(words, 3)
            queries.append(f"{first} {second} -{third} {rng.choice(FILTERS)}")
    return queries


def timed(call: Callable[[], tuple[int, list[str]]]) -> tuple[float, tuple[int, list[str]]]:
    started = time.perf_counter()
    answer = call()
    return (time.perf_counter() - started) * 1000, answer


def describe(text: str, ours: tuple[int, list[str]], theirs: tuple[int, list[str]]) -> str:
    if ours[0] != theirs[0]:
        return f"  {text!r}: total mjvault {ours[0]}, fts5 {theirs[0]}"
    first = next(i for i, (a, b) in enumerate(zip(ours[1], theirs[1], strict=False)) if a != b)
    return (
        f"  {text!r}: same total {ours[0]}, ids differ from #{first + 1} "
        f"({len(set(ours[1]) ^ set(theirs[1]))} not in both)"
    )


def summary_line(name: str, values: Sequence[float], unit: str = "ms") -> str:
    return (
        f"  {name:<22} best {min(values):8.2f} {unit}  median {statistics.median(values):8.2f} "
        f"{unit}  rounds " + " / ".join(f"{v:.2f}" for v in values)
    )


def compare_in_process(args: argparse.Namespace, vault: Vault, fts_path: Path) -> None:
    from mjvault.index.query import parse_query
    from mjvault.index.search import search

    index = vault.current_index()
    words, phrases = vocabulary(index)
    queries = make_queries(args.queries, args.mix, words, phrases)
    statements = [
        search_sqlite.translate(parse_query(q), sort=args.sort, limit=args.limit) for q in queries
    ]
    conn = search_sqlite.open_readonly(fts_path)

    def ours(text: str) -> Callable[[], tuple[int, list[str]]]:
        def call() -> tuple[int, list[str]]:
            result = search(index, parse_query(text), sort=args.sort, limit=args.limit)
            return result.total, result.job_ids

        return call

    def theirs(statement: search_sqlite.Statement) -> Callable[[], tuple[int, list[str]]]:
        return lambda: search_sqlite.run(conn, statement)

    for text, statement in list(zip(queries, statements, strict=True))[:20]:
        # Warm the page cache and the interpreter's paths (only the engine measured: its RSS).
        if args.only != "fts5":
            ours(text)()
        if args.only != "mjvault":
            theirs(statement)()
    print(
        f"{len(queries)} queries ({args.mix}, sort {args.sort}, limit {args.limit}), "
        f"{args.rounds} rounds, alternating query by query"
    )
    rounds: list[dict[str, float]] = []
    matches: list[int] = []
    # Each query's latencies over the rounds, per engine: for the forms' figures and the slowest.
    each: dict[str, list[list[float]]] = {
        "mjvault": [[] for _ in queries],
        "fts5": [[] for _ in queries],
    }
    for number in range(1, args.rounds + 1):
        mine: list[float] = []
        other: list[float] = []
        disagreements: list[str] = []
        same_totals = 0
        for position, (text, statement) in enumerate(zip(queries, statements, strict=True)):
            answer: tuple[int, list[str]] = (0, [])
            if args.only != "fts5":
                ms, answer = timed(ours(text))
                mine.append(ms)
                each["mjvault"][position].append(ms)
            if args.only == "mjvault":
                reference = answer
            else:
                ms, reference = timed(theirs(statement))
                other.append(ms)
                each["fts5"][position].append(ms)
            if number == 1:
                matches.append((reference if args.only == "fts5" else answer)[0])
                same_totals += answer[0] == reference[0]
                if answer != reference:
                    disagreements.append(describe(text, answer, reference))
        if number == 1 and args.only is None:
            print(
                f"answers: totals agree on {same_totals} of {len(queries)}, totals and "
                f"ids on {len(queries) - len(disagreements)} of {len(queries)}"
            )
            for line in disagreements[:SHOWN_DISAGREEMENTS]:
                print(line)
        figures: dict[str, float] = {}
        for name, latencies in (("mjvault", mine), ("fts5", other)):
            if latencies:
                figures[f"{name} p50"] = percentile(latencies, 0.5)
                figures[f"{name} p95"] = percentile(latencies, 0.95)
        if mine and other:
            figures["ratio p50"] = figures["mjvault p50"] / figures["fts5 p50"]
            figures["ratio p95"] = figures["mjvault p95"] / figures["fts5 p95"]
        rounds.append(figures)
        shown = ", ".join(
            f"{name} {value:.2f}" + ("×" if name.startswith("ratio") else " ms")
            for name, value in figures.items()
        )
        print(f"round {number}: {shown}", flush=True)
    conn.close()
    print(
        f"matches: median {statistics.median(matches):.0f}, max {max(matches)}, "
        f"empty {sum(1 for m in matches if m == 0)}"
    )
    print("over rounds (ratio: mjvault / fts5, under 1 is mjvault faster):")
    for name in rounds[0]:
        unit = "×" if name.startswith("ratio") else "ms"
        print(summary_line(name, [r[name] for r in rounds], unit))
    report_queries(args.mix, queries, each)


def report_queries(mix: str, queries: list[str], each: dict[str, list[list[float]]]) -> None:
    """Per form (``--mix all``), every round's latencies pooled; then each engine's slowest
    query (by its median over the rounds) and what the other engine took for it."""
    ran = [name for name, latencies in each.items() if latencies[0]]
    if mix == "all":
        print("per form, all rounds pooled:")
        for number, form in enumerate(FORMS):
            cells = []
            for name in ran:
                pooled = [ms for lists in each[name][number :: len(FORMS)] for ms in lists]
                cells.append(
                    f"{name} p50 {percentile(pooled, 0.5):.2f} p95 {percentile(pooled, 0.95):.2f} ms"
                )
            print(f"  {form:<11} " + ", ".join(cells))
    medians = {name: [statistics.median(lists) for lists in each[name]] for name in ran}
    for name in ran:
        slowest = max(range(len(queries)), key=medians[name].__getitem__)
        others = ", ".join(f"{o} {medians[o][slowest]:.2f} ms" for o in ran if o != name)
        print(
            f"slowest for {name}: {queries[slowest]!r} {medians[name][slowest]:.2f} ms"
            + (f" ({others})" if others else "")
        )


def frequent_words(index: Index, wanted: Sequence[str]) -> list[str]:
    """``wanted`` when both are among the vault's common words, else its two most common."""
    words, _ = vocabulary(index)
    if all(w in words for w in wanted):
        return list(wanted)
    from mjvault.text import search_tokens

    counts: Counter[str] = Counter()
    for n, summary in enumerate(index.iter_summaries()):
        if n >= 5000:
            break
        counts.update({t for t in search_tokens(summary.prompt) if len(t) > 3})
    return [w for w, _ in counts.most_common(2)]


def compare_commands(
    args: argparse.Namespace, vault_dir: Path, fts_path: Path, words: list[str]
) -> None:
    cli = Path(sys.executable).with_name("mjvault")
    ours = [str(cli), "--vault", str(vault_dir), "search", *words]
    theirs = [sys.executable, "-c", SQLITE_SCRIPT, str(fts_path), *words]
    print(f"whole command, {args.command_runs} runs each, alternating:")
    print(
        f"  {' '.join(ours[:1] + ours[3:])}  vs  python -c <{len(SQLITE_SCRIPT.splitlines())} lines>"
    )
    times: dict[str, list[float]] = {"mjvault": [], "sqlite3 script": []}
    outputs: dict[str, str] = {}
    listed: dict[str, list[str]] = {}
    for _ in range(args.command_runs):
        for name, command in (("mjvault", ours), ("sqlite3 script", theirs)):
            started = time.perf_counter()
            done = subprocess.run(command, capture_output=True, text=True, check=True)
            times[name].append(time.perf_counter() - started)
            outputs[name] = done.stderr.strip().splitlines()[-1]
            listed[name] = [line.split()[0] for line in done.stdout.splitlines() if line]
    for name, values in times.items():
        print(
            f"  {name:<15} best {min(values):.3f} s  median {statistics.median(values):.3f} s"
            f"  ({outputs[name]})"
        )
    with tempfile.TemporaryDirectory() as scratch:
        # One more run each under the launcher, for the command's own peak RSS (a child of
        # this grown process would report at least this process's).
        usage = Path(scratch) / "usage.json"
        peaks = []
        for name, command in (("mjvault", ours), ("sqlite3 script", theirs)):
            subprocess.run(launched(command, usage), capture_output=True, check=True)
            peaks.append(f"{name} {read_usage(usage).peak_rss_kib / 1024:.0f} MB")
    print("  peak RSS        " + ", ".join(peaks))
    totals = {name: output.split()[0] for name, output in outputs.items()}
    same = len(set(totals.values())) == 1 and listed["mjvault"] == listed["sqlite3 script"]
    print(f"  answers         {'the same' if same else 'DIFFER'}: total and the jobs listed")
    best = min(times["mjvault"]) / min(times["sqlite3 script"])
    median = statistics.median(times["mjvault"]) / statistics.median(times["sqlite3 script"])
    print(f"  ratio           best {best:.2f}×  median {median:.2f}×")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--limit", type=int, default=50, help="results per query (the table's)")
    parser.add_argument("--sort", default="newest", choices=("newest", "oldest", "relevance"))
    parser.add_argument("--mix", default="words", choices=(*FORMS, "all"))
    parser.add_argument("--command-runs", type=int, default=10, help="0: skip the whole command")
    parser.add_argument("--command-words", nargs=2, default=("fox", "snow"))
    parser.add_argument(
        "--only", choices=("mjvault", "fts5"), help="run one engine (its own peak RSS)"
    )
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/mjvault-bench"))
    args = parser.parse_args()
    vault_dir = args.workdir / f"search-{args.jobs}"
    held = 0
    if (vault_dir / "config").exists():
        with Vault.open(vault_dir) as vault:
            held = vault.current_index().job_count()
    if held != args.jobs:
        print(f"building a vault of {args.jobs} jobs in {vault_dir} ({held} held) …", flush=True)
        print(f"  built in {build(vault_dir, args.jobs):.1f} s", flush=True)
    vault = Vault.open(vault_dir)
    index = vault.current_index()
    fts_path = args.workdir / f"fts-{args.jobs}.sqlite"
    if not search_sqlite.current(fts_path, index):
        print(f"building the FTS5 tables in {fts_path} …", flush=True)
        before, started = peak_rss_mb(), time.perf_counter()
        built = search_sqlite.build(fts_path, index)
        print(
            f"  {built} jobs in {time.perf_counter() - started:.1f} s, "
            f"peak RSS {before:.0f} MB before, {peak_rss_mb():.0f} MB after",
            flush=True,
        )
    stats = index.stats()
    jobs = max(1, index.job_count())
    fts_bytes = fts_path.stat().st_size
    print(
        f"jobs {index.job_count()}: mjvault index {stats['bytes'] / 2**20:.1f} MiB "
        f"({stats['bytes'] / jobs:.0f} B/job; in use {stats['used_bytes'] / jobs:.0f} B/job), "
        f"sqlite file {fts_bytes / 2**20:.1f} MiB ({fts_bytes / jobs:.0f} B/job)"
    )
    compare_in_process(args, vault, fts_path)
    engines = "both engines" if args.only is None else args.only
    print(f"peak RSS ({engines}, this process) {peak_rss_mb():.0f} MB")
    if args.command_runs > 0:
        words = frequent_words(index, args.command_words)
        vault.close()
        compare_commands(args, vault_dir, fts_path, words)
    else:
        vault.close()


if __name__ == "__main__":
    main()
