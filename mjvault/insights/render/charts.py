"""The insights document's charts, drawn by matplotlib: inline SVG for the HTML report, one
tall figure for ``report --format pdf|png|svg``.

Only :class:`matplotlib.figure.Figure` is used, never ``pyplot``: no global figure registry,
no GUI backend chosen at import, nothing left open between calls. Counts get whole-number
ticks (1, 2 or 5 × 10^k: a count of 2.5 jobs says nothing); months and days sit on a date
axis, so an empty month is a gap of the right width and the labels are dates.
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable
from datetime import date, timedelta
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

JOBS_COLOUR = "#4e79a7"
IMAGES_COLOUR = "#f28e2b"
# GitHub's contribution greens: level 0 (no job) to 4 (the busiest quarter of active days).
LEVEL_COLOURS = ("#ebedf0", "#9be9a8", "#40c463", "#30a14e", "#216e39")
PALETTE = ("#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1")
WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
# The calendar shows the last this many weeks, as GitHub's does: ten years of days in one
# row of squares would be a strip too thin to read (and ~1 MB of SVG).
CALENDAR_WEEKS = 53
# Weeks beyond these many are left to the monthly chart: 500 bars in a row are a texture.
WEEKS_SHOWN = 104
# Stacked monthly charts over more months than this are drawn as stepped areas, not bars.
STEPPED_MONTHS = 36
# Models beyond these many are drawn together as "other": a legend of twenty says nothing.
MOST_MODELS = 6

STYLE: Any = {
    # Text stays text in the SVG, drawn in the reader's own sans-serif: no font is embedded
    # or fetched, and the page stays small.
    "svg.fonttype": "none",
    "font.family": "sans-serif",
    "font.size": 10,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.titlesize": 11,
    "axes.titleweight": "bold",
    "axes.titlelocation": "left",
}


def month_day(month: str) -> date:
    """``2024-05`` as the first day of that month."""
    return date(int(month[:4]), int(month[5:7]), 1)


def _days(days: list[date]) -> Any:
    """Dates as matplotlib's day numbers (bar widths are then in days)."""
    import matplotlib.dates as mdates

    return mdates.date2num(days)


def _integer_axis(ax: Axes) -> None:
    from matplotlib.ticker import MaxNLocator, StrMethodFormatter

    # Whole numbers with thousands separated, never "1e6" in a corner.
    ax.yaxis.set_major_formatter(StrMethodFormatter("{x:,.0f}"))
    ax.yaxis.set_major_locator(
        MaxNLocator(nbins=5, integer=True, steps=[1, 2, 5, 10], min_n_ticks=2)
    )
    # Nothing but zeros: matplotlib would span ±0.06 and label 0 three times.
    ax.set_ylim(0, max(1.0, ax.get_ylim()[1]))
    ax.grid(axis="y", color="#e3e3e3", linewidth=0.8)
    ax.set_axisbelow(True)


def _date_axis(ax: Axes) -> None:
    import matplotlib.dates as mdates

    ax.xaxis_date()
    locator = mdates.AutoDateLocator(minticks=3, maxticks=10)
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))


def _empty(ax: Axes, title: str, why: str = "no dated jobs") -> None:
    ax.set_title(title)
    ax.text(0.5, 0.5, why, ha="center", va="center", transform=ax.transAxes)
    ax.set_xticks([])
    ax.set_yticks([])


def _legend_above(ax: Axes, entries: int, title: str) -> None:
    """The title, and under it the legend, both left-aligned above the plot: inside the plot
    a legend hides the tallest bars; at the right it takes a margin every chart of the poster
    then shares, and on a phone, where a chart scrolls inside its card, it starts off
    screen."""
    columns = min(entries, 4)
    ax.legend(
        frameon=False,
        loc="lower left",
        bbox_to_anchor=(0.0, 1.0),
        ncols=columns,
        fontsize=9,
        borderaxespad=0.2,
        handlelength=1.2,
        columnspacing=1.2,
    )
    rows = -(-entries // columns)
    ax.set_title(title, pad=6 + 14 * rows)  # above the legend's rows of 9-point text


def _month_span(ax: Axes, doc: dict[str, Any]) -> None:
    """Every monthly chart spans the same months (the first to the last with jobs), so the
    charts of a poster line up and a month without a point is still on the axis."""
    months = doc["activity"]["per_month"]
    if months:
        first = month_day(months[0]["month"])
        last = month_day(months[-1]["month"])
        end = date(last.year + last.month // 12, last.month % 12 + 1, 1)
        ax.set_xlim(*_days([first, end]))


def _month_bars(ax: Axes, months: list[str], series: list[tuple[str, list[Any], str]]) -> None:
    """Bars side by side in each month, together ~24 days wide, centred on the month."""
    width = 24 / len(series)
    for i, (label, values, colour) in enumerate(series):
        offset = -12 + width * (i + 0.5)
        ax.bar(
            _days([month_day(m) + timedelta(days=15 + offset) for m in months]),
            values,
            width=width,
            color=colour,
            label=label,
        )


def draw_activity(ax: Axes, doc: dict[str, Any]) -> None:
    """Jobs and images a month, side by side, every month of the span."""
    months = doc["activity"]["per_month"]
    title = "Jobs and images per month"
    if not months:
        return _empty(ax, title)
    _month_bars(
        ax,
        [m["month"] for m in months],
        [
            ("jobs", [m["jobs"] for m in months], JOBS_COLOUR),
            ("images", [m["images"] for m in months], IMAGES_COLOUR),
        ],
    )
    _legend_above(ax, 2, title)
    _integer_axis(ax)
    _date_axis(ax)
    _month_span(ax, doc)


def _next_month(day: date) -> date:
    return date(day.year + day.month // 12, day.month % 12 + 1, 1)


def _stacked(ax: Axes, months: list[str], series: dict[str, list[float]]) -> None:
    """Series stacked a month: a bar each over a short span; over a long one (every month
    present) one stepped area a series, so ten years of eight models are 8 shapes in the
    page rather than 960, each ~200 bytes of SVG and a matplotlib artist to lay out."""
    starts = [month_day(m) for m in months]
    contiguous = all(_next_month(a) == b for a, b in zip(starts, starts[1:], strict=False))
    bottom = [0.0] * len(months)
    for i, (name, values) in enumerate(series.items()):
        top = [b + v for b, v in zip(bottom, values, strict=True)]
        colour = PALETTE[i % len(PALETTE)]
        if contiguous and len(months) > STEPPED_MONTHS:
            edges = _days([*starts, _next_month(starts[-1])])
            ax.stairs(top, edges, baseline=bottom, fill=True, color=colour, label=name)
        else:
            middles = _days([d + timedelta(days=15) for d in starts])
            ax.bar(middles, values, width=24, bottom=bottom, label=name, color=colour)
        bottom = top


def iso_week_day(week: str) -> date:
    """``2024-W05`` as the Monday of that ISO week."""
    return date.fromisocalendar(int(week[:4]), int(week[6:]), 1)


def draw_weeks(ax: Axes, doc: dict[str, Any]) -> None:
    """Jobs a week: the rhythm a month's total hides (the last :data:`WEEKS_SHOWN`)."""
    weeks = doc["activity"]["per_week"]
    title = "Jobs per week"
    if not weeks:
        return _empty(ax, title)
    if len(weeks) > WEEKS_SHOWN:
        weeks = weeks[-WEEKS_SHOWN:]
        title = f"Jobs per week, the last {WEEKS_SHOWN} weeks"
    ax.bar(
        _days([iso_week_day(w["week"]) + timedelta(days=3) for w in weeks]),
        [w["jobs"] for w in weeks],
        width=6,
        color=JOBS_COLOUR,
    )
    ax.set_title(title)
    _integer_axis(ax)
    _date_axis(ax)
    if len(weeks) == len(doc["activity"]["per_week"]):
        _month_span(ax, doc)  # lined up with the monthly charts when it shows every week


def draw_heatmap(ax: Axes, doc: dict[str, Any]) -> None:
    """GitHub's calendar: a column a week (Monday on top), a square a day, coloured by level."""
    from matplotlib.colors import BoundaryNorm, ListedColormap

    days = doc["activity"]["heatmap"]
    title = "Jobs per day"
    if not days:
        return _empty(ax, title)
    last = date.fromisoformat(days[-1]["day"])
    start = last - timedelta(days=last.weekday() + 7 * (CALENDAR_WEEKS - 1))
    if date.fromisoformat(days[0]["day"]) < start:
        days = [d for d in days if d["day"] >= start.isoformat()]
        title = f"Jobs per day, the last {CALENDAR_WEEKS} weeks"
    first = date.fromisoformat(days[0]["day"])
    monday = first - timedelta(days=first.weekday())
    weeks = (date.fromisoformat(days[-1]["day"]) - monday).days // 7 + 1
    grid = [[float("nan")] * weeks for _ in range(7)]
    for d in days:
        column = (date.fromisoformat(d["day"]) - monday).days // 7
        grid[d["weekday"]][column] = d["level"]
    # Cells as vector squares (not an embedded bitmap): sharp at any zoom, with white gaps.
    ax.pcolormesh(
        [[float(v) for v in row] for row in grid],
        cmap=ListedColormap(LEVEL_COLOURS).with_extremes(bad="white"),
        norm=BoundaryNorm([-0.5, 0.5, 1.5, 2.5, 3.5, 4.5], 5),
        edgecolors="white",
        linewidth=1.5,
    )
    ax.set_aspect("equal")
    ax.invert_yaxis()  # Monday on top, as GitHub's calendar
    ax.set_yticks([0.5, 2.5, 4.5], [WEEKDAYS[0], WEEKDAYS[2], WEEKDAYS[4]])
    # A label at the first week of each month; every second or third when they would crowd.
    marks: list[tuple[int, str]] = []
    day = date(first.year, first.month, 1)
    while day <= date.fromisoformat(days[-1]["day"]):
        column = (max(day, first) - monday).days // 7
        if marks and column - marks[-1][0] < 3:
            marks.pop()  # a month begun in the last days of the span: no room for both
        marks.append((column, day.strftime("%b %Y" if day.month == 1 or not marks else "%b")))
        day = date(day.year + day.month // 12, day.month % 12 + 1, 1)
    step = len(marks) // 12 + 1
    ax.set_xticks([c + 0.5 for c, _ in marks[::step]], [label for _, label in marks[::step]])
    ax.tick_params(length=0)
    for spine in ax.spines.values():
        spine.set_visible(False)
    ax.set_title(title)


def draw_hours(ax: Axes, doc: dict[str, Any]) -> None:
    """Jobs by hour of day (UTC) and weekday."""
    rows = doc["activity"]["hour_weekday"]
    title = f"Jobs by weekday and hour ({doc['activity'].get('timezone') or 'UTC'})"
    if not any(any(r) for r in rows):
        return _empty(ax, title)
    grid = [[rows[hour][weekday] for hour in range(len(rows))] for weekday in range(7)]
    image = ax.pcolormesh(grid, cmap="Blues", vmin=0, edgecolors="white", linewidth=0.5)
    ax.invert_yaxis()
    ax.set_yticks([d + 0.5 for d in range(7)], WEEKDAYS)
    ax.set_xticks(range(0, 25, 3), [f"{h:02d}:00" for h in range(0, 25, 3)])
    ax.tick_params(length=0)
    from matplotlib.ticker import MaxNLocator

    # The scale in a slim axes of its own just right of the grid: a colour bar laid out by
    # the figure goes to the margin at the far right, away from what it explains.
    scale = ax.inset_axes((1.012, 0.0, 0.014, 1.0))
    colourbar = ax.figure.colorbar(image, cax=scale)
    colourbar.locator = MaxNLocator(nbins=4, integer=True)
    colourbar.update_ticks()
    colourbar.outline.set_visible(False)
    scale.tick_params(length=2, labelsize=8)
    scale.set_title("jobs", fontsize=8, fontweight="normal", loc="left")
    ax.set_title(title)


def model_series(doc: dict[str, Any]) -> tuple[list[str], list[str], dict[str, list[float]]]:
    """Months, models (the most used first, the rest as "other") and each one's share."""
    months = [m for m in doc["evolution"]["models"]]
    used: dict[str, float] = {}
    for m in months:
        for name, share in m["share"].items():
            used[name] = used.get(name, 0.0) + share * m["jobs"]
    ranked = sorted(used, key=lambda name: (-used[name], name))
    kept = ranked[:MOST_MODELS] if len(ranked) <= MOST_MODELS else ranked[: MOST_MODELS - 1]
    names = kept + (["other"] if len(ranked) > len(kept) else [])
    series: dict[str, list[float]] = {name: [] for name in names}
    for m in months:
        for name in kept:
            series[name].append(m["share"].get(name, 0.0))
        if "other" in series:
            series["other"].append(sum(v for k, v in m["share"].items() if k not in kept))
    return [m["month"] for m in months], names, series


def draw_models(ax: Axes, doc: dict[str, Any]) -> None:
    """Each model version's share of a month's jobs, stacked to 100 %."""
    from matplotlib.ticker import PercentFormatter

    months, names, series = model_series(doc)
    title = "Model versions, share of a month's jobs"
    if not names:
        return _empty(ax, title)
    _stacked(ax, months, {name: series[name] for name in names})
    ax.set_ylim(0, 1)
    ax.yaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
    _legend_above(ax, len(names), title)
    _date_axis(ax)
    _month_span(ax, doc)


def draw_prompt_words(ax: Axes, doc: dict[str, Any]) -> None:
    """The mean prompt length a month, over the months that had jobs."""
    jobs = {m["month"]: m["jobs"] for m in doc["activity"]["per_month"]}
    points = [m for m in doc["evolution"]["prompt_words"] if jobs.get(m["month"], 1)]
    title = "Prompt length, mean words a job"
    if not points:
        return _empty(ax, title)
    ax.plot(
        _days([month_day(m["month"]) + timedelta(days=15) for m in points]),
        [m["mean"] for m in points],
        marker="o",
        color=JOBS_COLOUR,
    )
    _integer_axis(ax)
    _date_axis(ax)
    _month_span(ax, doc)
    ax.set_title(title)


def draw_cost(ax: Axes, doc: dict[str, Any]) -> None:
    """The estimated cost a month (fast minutes × price)."""
    cost = doc["cost"]
    months = cost["per_month"]
    title = f"Estimated cost per month ({cost['currency']}, estimate)"
    if not months:
        return _empty(ax, title)
    ax.bar(
        _days([month_day(m["month"]) + timedelta(days=15) for m in months]),
        [m["cost"] for m in months],
        width=24,
        color="#59a14f",
    )
    # All relax time (or no job): a 0-to-1 axis rather than one around ±0.06.
    ax.set_ylim(0, ax.get_ylim()[1] if any(m["cost"] for m in months) else 1.0)
    ax.grid(axis="y", color="#e3e3e3", linewidth=0.8)
    ax.set_axisbelow(True)
    _date_axis(ax)
    _month_span(ax, doc)
    ax.set_title(title)


def draw_params(ax: Axes, doc: dict[str, Any]) -> None:
    """The share of a month's jobs that used each of the most used parameters."""
    from matplotlib.ticker import PercentFormatter

    months = doc["evolution"]["params"]
    used: dict[str, int] = {}
    for m in months:
        for name, count in m["count"].items():
            used[name] = used.get(name, 0) + count
    names = sorted(used, key=lambda name: (-used[name], name))[:MOST_MODELS]
    title = "Parameters, share of a month's jobs"
    if not names:
        return _empty(ax, title, "no parameter used")
    # Months without a job have no share: a gap in the line, not a fall to zero.
    kept = [m for m in months if m["jobs"]]
    x = _days([month_day(m["month"]) + timedelta(days=15) for m in kept])
    for i, name in enumerate(names):
        ax.plot(
            x,
            [m["share"].get(name, 0.0) for m in kept],
            marker="o",
            markersize=3,
            color=PALETTE[i % 7],
            label=name,
        )
    ax.set_ylim(0, 1)
    ax.yaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
    ax.grid(axis="y", color="#e3e3e3", linewidth=0.8)
    _legend_above(ax, len(names), title)
    _date_axis(ax)
    _month_span(ax, doc)


def draw_follow_ups(ax: Axes, doc: dict[str, Any]) -> None:
    """Grids a month and the jobs that followed one up (upscales, variations, pans, zooms)."""
    follow = doc["evolution"]["follow_ups"]
    months = follow["per_month"]
    title = "Grids and follow-ups per month"
    if not any(m["grids"] or m["follow_ups"] for m in months):
        return _empty(ax, title, "no grid and no follow-up" if months else "no dated jobs")
    _month_bars(
        ax,
        [m["month"] for m in months],
        [
            ("grids", [m["grids"] for m in months], JOBS_COLOUR),
            ("follow-ups", [m["follow_ups"] for m in months], IMAGES_COLOUR),
        ],
    )
    _legend_above(ax, 2, title)
    _integer_axis(ax)
    _date_axis(ax)
    _month_span(ax, doc)


def draw_ratings(ax: Axes, doc: dict[str, Any]) -> None:
    """Jobs liked and jobs ranked a month, where the records carry them."""
    ratings = doc["ratings"]
    months = ratings["per_month"]
    title = "Likes and ranks per month"
    if not months or not any(m["liked"] or m["ranked"] for m in months):
        return _empty(ax, title, "no like or rank in the records")
    _month_bars(
        ax,
        [m["month"] for m in months],
        [
            ("liked", [m["liked"] for m in months], "#e15759"),
            ("ranked", [m["ranked"] for m in months], "#76b7b2"),
        ],
    )
    _legend_above(ax, 2, title)
    _integer_axis(ax)
    _date_axis(ax)
    _month_span(ax, doc)


def type_series(doc: dict[str, Any]) -> tuple[list[str], dict[str, list[int]]] | None:
    """Jobs a month by job type (the most used first, beyond six as "other"), from the
    document's ``types.per_month`` (``{"month": …, "jobs": {type: n}}``); ``None`` for a
    document written before types were counted, or whose breakdown is not that shape."""
    types = doc.get("types")
    entries = types.get("per_month") if isinstance(types, dict) else None
    if not isinstance(entries, list):
        return None
    months: list[str] = []
    rows: list[dict[str, int]] = []
    for entry in entries:
        if not isinstance(entry, dict) or not isinstance(entry.get("jobs"), dict):
            return None
        months.append(str(entry.get("month")))
        rows.append({str(k): int(v) for k, v in entry["jobs"].items()})
    used: dict[str, int] = {}
    for row in rows:
        for name, n in row.items():
            used[name] = used.get(name, 0) + n
    ranked = sorted(used, key=lambda name: (-used[name], name))
    kept = ranked[:MOST_MODELS] if len(ranked) <= MOST_MODELS else ranked[: MOST_MODELS - 1]
    series = {name: [row.get(name, 0) for row in rows] for name in kept}
    if len(ranked) > len(kept):
        series["other"] = [sum(n for k, n in row.items() if k not in kept) for row in rows]
    return months, series


def type_totals(doc: dict[str, Any], names: list[str]) -> dict[str, int]:
    """Each drawn type's jobs over the whole span, jobs without a date included (from
    ``types.total`` when the document has it, else the months summed); ``other`` is every
    type not in ``names``."""
    rows = doc.get("types", {}).get("total")
    if isinstance(rows, list):
        jobs = {str(r["type"]): int(r["jobs"]) for r in rows}
    else:
        found = type_series(doc)
        jobs = {k: sum(v) for k, v in found[1].items()} if found else {}
    out = {name: jobs.get(name, 0) for name in names if name != "other"}
    if "other" in names:
        out["other"] = sum(n for k, n in jobs.items() if k not in out)
    return out


def draw_types(ax: Axes, doc: dict[str, Any]) -> None:
    """Jobs a month by type (grid, upscale, variation, video …), stacked."""
    found = type_series(doc)
    title = "Jobs per month, by type"
    if not found or not found[1]:
        return _empty(ax, title, "no job type counted")
    months, series = found
    _stacked(ax, months, {name: [float(v) for v in values] for name, values in series.items()})
    _legend_above(ax, len(series), title)
    _integer_axis(ax)
    _date_axis(ax)
    _month_span(ax, doc)


# name, drawer, height in inches at a width of 8: the report's charts, in its order.
CHARTS: tuple[tuple[str, Callable[[Axes, dict[str, Any]], None], float], ...] = (
    ("activity", draw_activity, 3.0),
    ("weeks", draw_weeks, 2.2),
    ("heatmap", draw_heatmap, 1.9),
    ("hours", draw_hours, 2.6),
    ("types", draw_types, 3.0),
    ("models", draw_models, 3.0),
    ("params", draw_params, 2.8),
    ("prompt-words", draw_prompt_words, 2.4),
    ("follow-ups", draw_follow_ups, 2.6),
    ("ratings", draw_ratings, 2.4),
    ("cost", draw_cost, 2.6),
)
WIDTH = 8.0


def charts_for(
    doc: dict[str, Any],
) -> list[tuple[str, Callable[[Axes, dict[str, Any]], None], float]]:
    """The charts of ``doc``, in the report's order: all of :data:`CHARTS` but the one by job
    type when the document has no such breakdown (one written before it was counted)."""
    return [c for c in CHARTS if c[0] != "types" or type_series(doc) is not None]


def _figure(height: float) -> Figure:
    from matplotlib.figure import Figure

    return Figure(figsize=(WIDTH, height), layout="constrained")


def style() -> Any:
    import matplotlib

    return matplotlib.rc_context(STYLE)


_SVG_HEAD = re.compile(r'<svg[^>]*?\swidth="[^"]*"\s+height="[^"]*"')


_METADATA = re.compile(r"\s*<metadata>.*?</metadata>", re.DOTALL)
_ID = re.compile(r'(\bid="|url\(#|href="#)([^")]+)')


_CLIP_ID = re.compile(r"\bp[0-9a-f]{10}\b")


def _stable_clip_ids(svg: str) -> str:
    """matplotlib names a clip path by a hash of its rectangle's floats at full precision,
    and constrained layout can place an axes (the weekly chart's, seen) a few 1e-13 points
    differently from one run to the next: the same drawing, another id. Numbered in order
    of first use instead, the same document gives the same bytes."""
    names: dict[str, str] = {}
    return _CLIP_ID.sub(lambda m: names.setdefault(m.group(0), f"clip{len(names) + 1}"), svg)


def _prefix_ids(svg: str, prefix: str) -> str:
    """Every id (and every reference to one) prefixed with the chart's name: matplotlib
    numbers its groups from 1 in each figure, and ids must be unique across the page."""
    return _ID.sub(lambda m: f"{m.group(1)}{prefix}-{m.group(2)}", svg)


def chart_svgs(doc: dict[str, Any]) -> list[tuple[str, str]]:
    """Each chart as ``(name, svg)``: an ``<svg>`` element to put inline in a page, scaling
    to the width it is given (its own width and height are dropped; the viewBox stays)."""
    import matplotlib

    out = []
    for name, draw, height in charts_for(doc):
        # A fixed salt: the ids matplotlib hashes for clip paths are the same run after run.
        with style(), matplotlib.rc_context({"svg.hashsalt": f"mjvault-{name}"}):
            figure = _figure(height)
            draw(figure.add_subplot(), doc)
            buffer = io.StringIO()
            figure.savefig(buffer, format="svg", metadata={"Date": None})
        text = buffer.getvalue()
        svg = text[text.index("<svg") :]
        head = _SVG_HEAD.match(svg)
        assert head is not None, "matplotlib's SVG starts with its size"
        svg = (
            head.group(0).split(" width=")[0]
            + f' class="chart" role="img" aria-label="{name}"'
            + svg[head.end() :]
        )
        # The RDF block (creator, format) says nothing to a reader of the page.
        svg = _METADATA.sub("", svg, count=1)
        out.append((name, _prefix_ids(_stable_clip_ids(svg), name)))
    return out


def poster_figure(doc: dict[str, Any], title: str) -> Figure:
    """Every chart in one tall figure, each axes labelled with its chart's name; draw or
    save it inside :func:`style` (fonts, sizes)."""
    charts = charts_for(doc)
    figure = _figure(sum(h for _, _, h in charts) + 0.6)
    figure.suptitle(title, x=0.02, ha="left", fontsize=13, fontweight="bold")
    grid = figure.add_gridspec(len(charts), 1, height_ratios=[h for _, _, h in charts])
    for i, (name, draw, _) in enumerate(charts):
        ax = figure.add_subplot(grid[i], label=name)
        draw(ax, doc)
    return figure


def poster(doc: dict[str, Any], fmt: str, title: str) -> bytes:
    """Every chart in one tall figure, as ``fmt`` (``pdf``, ``png`` or ``svg``)."""
    import matplotlib

    with style(), matplotlib.rc_context({"svg.hashsalt": "mjvault-report"}):
        figure = poster_figure(doc, title)
        buffer = io.BytesIO()
        # No creation date in PDF or SVG: the same document gives the same file.
        metadata = {"CreationDate": None} if fmt == "pdf" else {"Date": None}
        figure.savefig(buffer, format=fmt, dpi=120, metadata=metadata if fmt != "png" else None)
    if fmt == "svg":
        return _stable_clip_ids(buffer.getvalue().decode("utf-8")).encode("utf-8")
    return buffer.getvalue()
