"""``mjvault report``: the insights document as one self-contained HTML page, or its charts
as one PDF, PNG or SVG file.

The page carries everything inline (style, SVG charts, tables): it opens from disk, on a
phone as on a desktop, and fetches nothing, no script, font or image. The cost is always
written as an estimate, next to the table it was computed with.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

from mjvault.insights.render.charts import chart_svgs, poster

FORMATS = ("html", "pdf", "png", "svg")

CHART_TITLES = {
    "activity": "Activity",
    "weeks": "Week by week",
    "heatmap": "Every day",
    "hours": "When",
    "types": "Job types",
    "models": "Models",
    "params": "Parameters",
    "prompt-words": "Prompts",
    "follow-ups": "Follow-ups",
    "ratings": "Likes and ranks",
    "cost": "Cost (estimate)",
}
# Terms of a month shown in the table of months (the document keeps up to 20).
MONTH_TERMS = 5

_STYLE = (
    "body{font-family:system-ui,sans-serif;margin:0;background:#f4f5f7;color:#222;"
    "line-height:1.4}"
    "main{max-width:1000px;margin:0 auto;padding:1em}"
    "h1{font-size:1.4em;margin:.2em 0 .6em}h2{font-size:1.05em;margin:0 0 .5em}"
    ".figures{display:grid;grid-template-columns:repeat(auto-fit,minmax(9em,1fr));gap:.6em;"
    "margin-bottom:1em}"
    ".figures div,.card{background:#fff;border-radius:8px;box-shadow:0 1px 3px rgba(0,0,0,.12)}"
    ".figures div{padding:.5em .8em;font-size:.9em;color:#555}"
    ".figures b{display:block;font-size:1.4em;color:#222}"
    ".card{padding:.8em;margin-bottom:1em;overflow-x:auto}"
    # On a phone a chart keeps the width its labels need to be read (~10 px text) and
    # scrolls sideways inside its card; the page itself never does.
    "svg.chart{display:block;width:100%;min-width:540px;height:auto}"
    ".cards{display:grid;grid-template-columns:repeat(auto-fit,minmax(300px,1fr));gap:0 1em}"
    "table{border-collapse:collapse;font-size:.9em;width:100%}"
    "th,td{padding:.2em .4em;text-align:left;vertical-align:top}"
    "td.n,th.n,td:first-child{text-align:right;white-space:nowrap}td:first-child{text-align:left}"
    "tr+tr td{border-top:1px solid #eee}"
    ".note{color:#666;font-size:.85em;margin:.5em 0 0}"
)


def _e(value: object) -> str:
    return html.escape(str(value))


def _table(head: list[str], rows: list[list[object]], numeric: set[int] = frozenset()) -> str:  # type: ignore[assignment]
    if not rows:
        return "<p class='note'>none</p>"

    def cell(tag: str, i: int, value: object) -> str:
        return f"<{tag}{' class=n' if i in numeric else ''}>{_e(value)}</{tag}>"

    return (
        "<table><tr>"
        + "".join(cell("th", i, h) for i, h in enumerate(head))
        + "</tr>"
        + "".join(
            "<tr>" + "".join(cell("td", i, v) for i, v in enumerate(row)) + "</tr>" for row in rows
        )
        + "</table>"
    )


def _share(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f} %"


def _money(value: float, currency: str) -> str:
    return f"{value:,.2f} {currency}"


def figures(doc: dict[str, Any]) -> list[tuple[str, str]]:
    """The headline numbers, as (label, value) for the page and the terminal alike."""
    totals = doc["totals"]
    activity = doc["activity"]
    longest = activity["streaks"]["longest"]
    sessions = activity["sessions"]
    cost = doc["cost"]
    span = f"{totals['first']} to {totals['last']}" if totals["first"] else "no dated job"
    out = [
        ("jobs", str(totals["jobs"])),
        ("images", str(totals["images"])),
        ("span", span),
        ("days active", str(totals["days_active"])),
        ("longest streak", f"{longest['days']} days"),
        ("sessions", f"{sessions['count']} (mean {sessions['mean_jobs']:g} jobs)"),
        ("cost, estimated", _money(cost["total"], cost["currency"])),
    ]
    if totals["undated"]:
        out.insert(2, ("without a date", str(totals["undated"])))
    return out


def filter_text(doc: dict[str, Any]) -> str:
    """What the document counts: ``all jobs``, or the dates and query asked for."""
    f = doc["filter"]
    parts = []
    if f.get("since"):
        parts.append(f"since {f['since']}")
    if f.get("until"):
        parts.append(f"until {f['until']}")
    if f.get("query"):
        parts.append(f"matching {f['query']}")
    return "jobs " + ", ".join(parts) if parts else "all jobs"


def model_totals(doc: dict[str, Any]) -> list[tuple[str, int, float]]:
    """Each model's jobs over the whole span (from the monthly shares) and share of them."""
    jobs: dict[str, float] = {}
    for m in doc["evolution"]["models"]:
        for name, share in m["share"].items():
            jobs[name] = jobs.get(name, 0.0) + share * m["jobs"]
    total = sum(jobs.values()) or 1.0
    ranked = sorted(jobs.items(), key=lambda kv: (-kv[1], kv[0]))
    return [(name, round(n), n / total) for name, n in ranked]


def overall_terms(doc: dict[str, Any], top: int) -> list[tuple[str, int]]:
    """The monthly top terms added up: the terms of the whole span (those in a month's top)."""
    counts: dict[str, int] = {}
    for m in doc["terms"]["top"]:
        for term, count in m["terms"]:
            counts[term] = counts.get(term, 0) + count
    return sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:top]


def trend_rows(doc: dict[str, Any], key: str, top: int) -> list[list[object]]:
    """Rising (or falling) terms of every month, largest G² first."""
    rows = [
        [t["month"], x["term"], x["previous"], x["count"], f"{x['g2']:.1f}"]
        for t in doc["terms"]["trends"]
        for x in t[key]
    ]
    rows.sort(key=lambda r: -float(str(r[4])))
    return rows[:top]


def streak_text(streak: dict[str, Any]) -> str:
    """``9 days (2024-12-02 to 2024-12-10)``, or ``0 days``."""
    days = f"{streak['days']} day{'' if streak['days'] == 1 else 's'}"
    return f"{days} ({streak['start']} to {streak['end']})" if streak["days"] else days


def month_term_rows(doc: dict[str, Any], per_month: int = MONTH_TERMS) -> list[list[object]]:
    """A row a month: its most used terms and its signature terms (those most
    over-represented against the whole archive, with G²)."""
    top = {m["month"]: m["terms"] for m in doc["terms"]["top"]}
    signature = {m["month"]: m["terms"] for m in doc["terms"]["signature"]}
    rows: list[list[object]] = []
    for month in sorted(set(top) | set(signature)):
        used = ", ".join(f"{t} ({n})" for t, n in top.get(month, [])[:per_month])
        own = ", ".join(
            f"{x['term']} ({x['g2']:.1f})" for x in signature.get(month, [])[:per_month]
        )
        if used or own:
            rows.append([month, used or "–", own or "–"])
    return rows


def rating_rows(doc: dict[str, Any]) -> list[list[object]]:
    """Likes, ranks and the mean rank a month, for the months with any."""
    return [
        [
            m["month"],
            m["liked"],
            m["ranked"],
            "–" if m["mean_rank"] is None else f"{m['mean_rank']:g}",
        ]
        for m in doc["ratings"]["per_month"]
        if m["liked"] or m["ranked"]
    ]


def cost_table_rows(table: dict[str, Any], prefix: str = "") -> list[list[object]]:
    """The cost table flattened to (setting, value) rows, nested keys joined by dots."""
    rows: list[list[object]] = []
    for key, value in table.items():
        if isinstance(value, dict):
            rows.extend(cost_table_rows(value, f"{prefix}{key}."))
        else:
            rows.append([f"{prefix}{key}", value])
    return rows


def report_html(doc: dict[str, Any], *, title: str = "mjvault: insights", top: int = 15) -> str:
    """The whole report as one HTML page."""
    svgs = dict(chart_svgs(doc))
    cost = doc["cost"]
    currency = cost["currency"]

    def card(heading: str, body: str) -> str:
        return f"<section class='card'><h2>{_e(heading)}</h2>{body}</section>"

    def chart(name: str, note: str = "") -> str:
        if name not in svgs:
            return ""  # a breakdown the document does not carry (the one by job type)
        extra = f"<p class='note'>{_e(note)}</p>" if note else ""
        return card(CHART_TITLES[name], svgs[name] + extra)

    totals = doc["totals"]
    undated = (
        f"{totals['undated']} jobs without a date count in the totals, in no month."
        if totals["undated"]
        else ""
    )
    follow = doc["evolution"]["follow_ups"]
    ratings = doc["ratings"]
    threshold = doc["terms"]["threshold"]
    activity = doc["activity"]
    sessions = activity["sessions"]
    hidden = (
        "<p class='note'>Anonymized: terms never include a prompt's URLs.</p>"
        if doc["terms"].get("anonymized")
        else ""
    )
    type_rows = [
        [r["type"], r["jobs"], r.get("images", "")]
        for r in (doc.get("types") or {}).get("total") or []
        if isinstance(r, dict)
    ]
    tables = "".join(
        (
            card("Job types", _table(["type", "jobs", "images"], type_rows, {1, 2}))
            if type_rows
            else "",
            card(
                "Streaks and sessions",
                _table(
                    ["", "value"],
                    [
                        ["longest streak", streak_text(activity["streaks"]["longest"])],
                        ["current streak", streak_text(activity["streaks"]["current"])],
                        ["sessions", sessions["count"]],
                        ["jobs a session, mean", f"{sessions['mean_jobs']:g}"],
                        ["longest session", f"{sessions['longest_jobs']} jobs"],
                    ],
                    # Not a numeric column: numbers do not wrap, and a streak's dates must.
                )
                + "<p class='note'>A streak is a run of days with a job; a session a run of "
                f"jobs each less than {sessions['gap_minutes']} minutes after the one "
                "before.</p>",
            ),
            card(
                "Model versions",
                _table(
                    ["model", "jobs", "share"],
                    [[n, j, _share(s)] for n, j, s in model_totals(doc)],
                    {1, 2},
                ),
            ),
            card(
                "Top terms",
                _table(["term", "jobs"], [list(t) for t in overall_terms(doc, top)], {1})
                + "<p class='note'>Jobs a term is in, over the months it was among the "
                "month's most used.</p>" + hidden,
            ),
            card(
                "Rising terms",
                _table(
                    ["month", "term", "before", "then", "G²"],
                    trend_rows(doc, "rising", top),
                    {2, 3, 4},
                )
                + f"<p class='note'>Against the month before; listed when G² ≥ "
                f"{threshold['g2']} (p &lt; {threshold['p']}).</p>",
            ),
            card(
                "Falling terms",
                _table(
                    ["month", "term", "before", "then", "G²"],
                    trend_rows(doc, "falling", top),
                    {2, 3, 4},
                ),
            ),
            card(
                "Follow-ups and ratings",
                _table(
                    ["", "value"],
                    [
                        ["grids", follow["grids"]],
                        ["grids upscaled or varied", follow["grids_followed"]],
                        ["share", _share(follow["share"])],
                        ["jobs with a like or rank field", ratings["jobs_with_record_fields"]],
                        ["jobs liked", ratings["liked"]],
                        ["liked share", _share(ratings["liked_share"])],
                    ]
                    + [[f"rated {k}", v] for k, v in ratings["ranking"].items()],
                    {1},
                ),
            ),
            card(
                "Likes and ranks per month",
                _table(["month", "liked", "ranked", "mean rank"], rating_rows(doc), {1, 2, 3}),
            ),
        )
    )
    month_terms = card(
        "Terms a month",
        _table(["month", "most used (jobs)", "signature (G²)"], month_term_rows(doc))
        + "<p class='note'>Signature terms: the month's terms most over-represented against "
        f"the whole archive, listed when G² ≥ {threshold['g2']}.</p>" + hidden,
    )
    cost_rows = [
        [m["month"], f"{m['gpu_minutes']:g}", f"{m['fast_minutes']:g}", _money(m["cost"], currency)]
        for m in cost["per_month"]
    ]
    if cost.get("undated"):
        cost_rows.append(["no date", "", "", _money(cost["undated"], currency)])
    fast = cost.get("fast_minutes")
    cost_rows.append(
        [
            "total",
            f"{cost['gpu_minutes']:g}",
            "" if fast is None else f"{fast:g}",
            _money(cost["total"], currency),
        ]
    )
    cost_card = card(
        "Cost estimate, per month",
        _table(["month", "GPU minutes", "fast minutes", "cost"], cost_rows, {1, 2, 3})
        + "<p class='note'>An estimate, not a bill: GPU minutes a job from the table below "
        f"(by type, model, quality and video, times the speed's factor), fast minutes at "
        f"{_money(cost['price_per_fast_hour'], currency)} an hour.</p>"
        + _table(["setting", "value"], cost_table_rows(cost["table"]), {1}),
    )
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width,initial-scale=1'>"
        f"<title>{_e(title)}</title><style>{_STYLE}</style></head><body><main>"
        f"<h1>{_e(title)}</h1><p class='note'>{_e(filter_text(doc))}</p><div class='figures'>"
        + "".join(f"<div>{_e(k)}<b>{_e(v)}</b></div>" for k, v in figures(doc))
        + "</div>"
        + chart("activity", undated)
        + chart("weeks")
        + chart("heatmap")
        + chart("hours")
        + chart("types")
        + chart("models")
        + chart("params")
        + chart("prompt-words")
        + chart(
            "follow-ups",
            "Grids by their own month; follow-ups (upscales, variations, pans, zooms) by theirs.",
        )
        + chart("ratings")
        + f"<div class='cards'>{tables}</div>"
        + month_terms
        + chart("cost", "An estimate: see the table it was computed with below.")
        + cost_card
        + "</main></body></html>\n"
    )


def render(doc: dict[str, Any], fmt: str, *, title: str = "mjvault: insights") -> bytes:
    """The report as ``fmt`` (one of :data:`FORMATS`), as bytes to write to a file."""
    if fmt == "html":
        return report_html(doc, title=title).encode("utf-8")
    if fmt not in FORMATS:
        raise ValueError(f"unknown report format {fmt!r}")
    return poster(doc, fmt, title)


def format_of(path: Path, asked: str | None = None) -> str:
    """The format asked for, else the one the file's name ends in, else HTML."""
    if asked:
        return asked
    suffix = path.suffix.lower().lstrip(".")
    return suffix if suffix in FORMATS else "html"
