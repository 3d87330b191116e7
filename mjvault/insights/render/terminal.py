"""``mjvault stats`` for people: the insights document, storage and history as text.

Lines, not prints: the command echoes them and the tests compare them with a golden copy.
Sparklines go where a trend is the point (weeks, each model's share, prompt length); a table
where the numbers are (months, cost).
"""

from __future__ import annotations

import textwrap
from typing import Any

from mjvault.insights.render.charts import type_series, type_totals
from mjvault.insights.render.report import (
    cost_table_rows,
    filter_text,
    model_totals,
    overall_terms,
    trend_rows,
)

BLOCKS = "▁▂▃▄▅▆▇█"
BAR = 36  # the widest month's bar, in characters
SPARK_WIDTH = 60  # a longer series is summed in groups to fit a terminal's line
RECENT_WEEKS = 12  # the weeks shown one by one, however long the span
SIGNATURE_MONTHS = 12  # the latest months whose signature terms are listed
SIGNATURE_TERMS = 5  # terms listed a month


def buckets(values: list[int], width: int) -> tuple[int, list[float]]:
    """``values`` summed in consecutive groups of the smallest size that gives at most
    ``width`` of them (the last group may be shorter): the size and the sums."""
    size = max(1, -(-len(values) // width))
    return size, [float(sum(values[i : i + size])) for i in range(0, len(values), size)]


def sparkline(values: list[float], *, top: float | None = None) -> str:
    """One block character a value, the highest (or ``top``) a full block; zero is a space
    so that a quiet stretch reads as a gap, not as a low bar."""
    peak = top if top is not None else max(values, default=0)
    if peak <= 0:
        return " " * len(values)
    return "".join(
        " " if v <= 0 else BLOCKS[min(len(BLOCKS) - 1, int(v / peak * (len(BLOCKS) - 1) + 0.5))]
        for v in values
    )


def _share(value: float | None) -> str:
    return "   –  " if value is None else f"{100 * value:5.1f}%"


def _span(low: float, high: float) -> str:
    return f"{low:g}" if low == high else f"{low:g} to {high:g}"


def _number(value: float) -> str:
    return f"{value:,.1f}" if value != int(value) else f"{int(value):,}"


def insights_lines(doc: dict[str, Any], *, top: int = 15) -> list[str]:
    """The document as text, section by section."""
    totals = doc["totals"]
    activity = doc["activity"]
    out: list[str] = []
    add = out.append
    add(f"{filter_text(doc)}")
    add(
        f"jobs      {totals['jobs']}   images {totals['images']}"
        + (f"   without a date {totals['undated']}" if totals["undated"] else "")
    )
    span = f"{totals['first']}  to  {totals['last']}" if totals["first"] else "no dated job"
    add(f"span      {span}   days active {totals['days_active']}")
    longest, current = activity["streaks"]["longest"], activity["streaks"]["current"]
    streak = f"streaks   longest {longest['days']} days"
    if longest["days"]:
        streak += f" ({longest['start']} to {longest['end']})"
    add(streak + f", current {current['days']} days")
    s = activity["sessions"]
    add(
        f"sessions  {s['count']}, {s['mean_jobs']:g} jobs on average, the longest "
        f"{s['longest_jobs']} (a pause of {s['gap_minutes']} minutes ends one)"
    )

    months = activity["per_month"]
    add("")
    add("per month (jobs / images)")
    peak = max((m["jobs"] for m in months), default=0) or 1
    for m in months:
        bar = "█" * max(1, round(m["jobs"] / peak * BAR)) if m["jobs"] else ""
        add(f"  {m['month']:<8} {m['jobs']:>7} {m['images']:>8}  {bar}")
    weeks = activity["per_week"]
    if weeks:
        size, sums = buckets([w["jobs"] for w in weeks], SPARK_WIDTH)
        what = "per week" if size == 1 else f"per {size} weeks"
        add(f"{what:<9} {weeks[0]['week']} {sparkline(sums)} {weeks[-1]['week']}")
        recent = weeks[-RECENT_WEEKS:]
        counts = [w["jobs"] for w in recent]
        add(
            f"last {len(recent)} weeks {recent[0]['week']} {sparkline([float(n) for n in counts])} "
            f"{recent[-1]['week']}  ({sum(counts)} jobs, at most {max(counts)} a week)"
        )
    rows = activity["hour_weekday"]
    by_hour = [sum(r) for r in rows]
    if any(by_hour):
        zone = activity.get("timezone") or "UTC"
        add(f"per hour  00 {sparkline([float(h) for h in by_hour])} 23 ({zone})")
        by_day = [sum(r[d] for r in rows) for d in range(7)]
        add(f"per day   Mon {sparkline([float(d) for d in by_day])} Sun")

    models = doc["evolution"]["models"]
    add("")
    add("by model version (jobs, share, share a month)")
    for name, jobs, share in model_totals(doc):
        line = sparkline([m["share"].get(name, 0.0) for m in models], top=1.0)
        add(f"  {name:<16} {jobs:>7} {_share(share)}  {line}")
    by_type = type_series(doc)
    if by_type:
        _, series = by_type
        totals = type_totals(doc, list(series))
        total = sum(totals.values()) or 1
        add("")
        add("by job type (jobs, share, jobs a month)")
        for name, values in series.items():
            line = sparkline([float(v) for v in values])
            add(f"  {name:<16} {totals[name]:>7} {_share(totals[name] / total)}  {line}")
    params = doc["evolution"]["params"]
    used: dict[str, int] = {}
    for m in params:
        for name, count in m["count"].items():
            used[name] = used.get(name, 0) + count
    if used:
        total = sum(m["jobs"] for m in params) or 1
        add("")
        add("parameters (jobs, share, share a month)")
        for name, count in sorted(used.items(), key=lambda kv: (-kv[1], kv[0]))[:top]:
            line = sparkline([m["share"].get(name, 0.0) for m in params], top=1.0)
            add(f"  {name:<16} {count:>7} {_share(count / total)}  {line}")
    words = [m["mean"] for m in doc["evolution"]["prompt_words"] if m["mean"]]
    if words:
        add("")
        add(
            f"prompt length  {sparkline(words)}  {words[0]:g} to {words[-1]:g} words (mean a month)"
        )
    follow = doc["evolution"]["follow_ups"]
    add(
        f"follow-ups     {follow['grids_followed']} of {follow['grids']} grids upscaled, varied, "
        f"panned or zoomed ({_share(follow['share']).strip()})"
    )
    if follow["per_month"]:
        grids = [float(m["grids"]) for m in follow["per_month"]]
        ups = [float(m["follow_ups"]) for m in follow["per_month"]]
        add(f"  a month      grids {sparkline(grids)}  follow-ups {sparkline(ups)}")
    ratings = doc["ratings"]
    if ratings["jobs_with_record_fields"]:
        ranks = " ".join(f"{k}:{v}" for k, v in ratings["ranking"].items())
        add(
            f"ratings        {ratings['liked']} liked ({_share(ratings['liked_share']).strip()}), "
            f"ranked {ranks}"
        )
        months = ratings["per_month"]
        means = [m["mean_rank"] for m in months if m["mean_rank"] is not None]
        add(
            f"  a month      liked {sparkline([float(m['liked']) for m in months])}  "
            f"ranked {sparkline([float(m['ranked']) for m in months])}"
            + (f"  mean rank {_span(min(means), max(means))}" if means else "")
        )

    add("")
    add(
        "top terms (jobs)"
        + ("  (anonymized: URLs never counted)" if doc["terms"].get("anonymized") else "")
    )
    terms = overall_terms(doc, top)
    add("  " + (", ".join(f"{t} ({n})" for t, n in terms) or "(none)"))
    threshold = doc["terms"]["threshold"]
    for key in ("rising", "falling"):
        found = trend_rows(doc, key, top)
        add(f"{key} terms (against the month before, G² ≥ {threshold['g2']:g})")
        if not found:
            add("  (none)")
        for month, term, before, then, g2 in found:
            add(f"  {month}  {term!s:<20} {before:>6} → {then:<6} G² {g2}")
    signature = [m for m in doc["terms"]["signature"] if m["terms"]][-SIGNATURE_MONTHS:]
    add(f"signature terms (a month against the whole archive, G² ≥ {threshold['g2']:g})")
    if not signature:
        add("  (none)")
    for m in signature:
        own = ", ".join(f"{x['term']} ({x['g2']:.1f})" for x in m["terms"][:SIGNATURE_TERMS])
        add(f"  {m['month']}  {own}")

    cost = doc["cost"]
    currency = cost["currency"]
    add("")
    add(f"cost, an ESTIMATE ({currency}; fast minutes at {cost['price_per_fast_hour']:g} an hour)")
    add(f"  {'month':<8} {'GPU min':>10} {'fast min':>10} {'cost':>10}")
    for m in cost["per_month"]:
        add(
            f"  {m['month']:<8} {_number(m['gpu_minutes']):>10} {_number(m['fast_minutes']):>10} "
            f"{m['cost']:>10.2f}"
        )
    if cost.get("undated"):
        add(f"  {'no date':<8} {'':>10} {'':>10} {cost['undated']:>10.2f}")
    fast = cost.get("fast_minutes")
    fast_text = "" if fast is None else _number(fast)
    add(f"  {'total':<8} {_number(cost['gpu_minutes']):>10} {fast_text:>10} {cost['total']:>10.2f}")
    add("  estimated with the table:")
    table = "; ".join(f"{k} {v}" for k, v in cost_table_rows(cost["table"]))
    out.extend(textwrap.wrap(table, 96, initial_indent="    ", subsequent_indent="    "))
    return [line.rstrip() for line in out]


def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"


def storage_lines(storage: dict[str, Any]) -> list[str]:
    """Objects, media and metadata, dedup and the index, as ``stats`` has always shown them."""
    meta = storage["metadata"]
    ratio = f", compression {meta['compression_ratio']}x" if meta["compression_ratio"] else ""
    dedup = storage["dedup"]
    return [
        "",
        "storage",
        f"  objects   {storage['objects']} ({_size(storage['bytes'])}, "
        f"{_size(storage['disk_bytes'])} on disk)",
        f"  media     {storage['media']['objects']} ({_size(storage['media']['bytes'])})",
        f"  metadata  {meta['objects']} ({_size(meta['bytes'])}, {_size(meta['plain_bytes'])} "
        f"before compression{ratio})",
        f"  dedup     {dedup['image_references']} image references to {dedup['unique_images']} "
        f"images, {_size(dedup['saved_bytes'])} saved",
        f"  index     {_size(storage['index_bytes'])}",
    ]


def history_lines(history: dict[str, Any]) -> list[str]:
    out = [
        "",
        f"snapshots {history['snapshots']}"
        + (f"  ({history['first']} to {history['last']})" if history["snapshots"] else ""),
    ]
    for name, count in history["by_source"].items():
        out.append(f"  {name:<24} {count:>7}")
    for s in history["recent"]:
        st = s["stats"]
        out.append(
            f"  {s['id'][:12]}  {s['time'][:19]}  {s['source']:<12} +{st.get('added', 0)} "
            f"~{st.get('updated', 0)} -{st.get('removed', 0)}"
        )
    return out
