"""The insights report and terminal output, rendered from a fixture document of the shape
docs/usage.md ("The insights document") gives: the page in chromium, the chart files parsed
back, the terminal text against a golden copy."""

from __future__ import annotations

import io
import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mjvault.insights.render import charts
from mjvault.insights.render.charts import CHARTS, chart_svgs, charts_for
from mjvault.insights.render.report import render, report_html
from tests.conftest import system_chromium

HERE = Path(__file__).parent
FIXTURE = HERE / "insights_fixture.json"


def one_chart(doc: dict[str, Any], name: str) -> str:
    """The chart ``name`` of ``doc`` as the page has it, drawn alone: the ten others are not
    a test's subject and cost a second a document."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(charts, "CHARTS", tuple(c for c in CHARTS if c[0] == name))
        [(drawn, svg)] = chart_svgs(doc)
    assert drawn == name
    return svg


def fixture() -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(FIXTURE.read_text(encoding="utf-8"))
    return doc


def with_types(doc: dict[str, Any]) -> dict[str, Any]:
    """``doc`` with jobs a month by job type, as a document that counts them carries."""
    follow = doc["evolution"]["follow_ups"]["per_month"]
    months = [
        {
            "month": m["month"],
            "jobs": {"grid": f["grids"], "upscale": f["follow_ups"]} if m["jobs"] else {},
            "images": {"grid": 4 * f["grids"], "upscale": f["follow_ups"]} if m["jobs"] else {},
        }
        for m, f in zip(doc["activity"]["per_month"], follow, strict=True)
    ]
    total = {t: sum(m["jobs"].get(t, 0) for m in months) for t in ("grid", "upscale")}
    doc["types"] = {
        "total": [{"type": t, "jobs": n, "images": 0} for t, n in total.items()],
        "per_month": months,
        "undated": {},
    }
    return doc


# The fixture's charts: every one but the breakdown by job type, which it does not carry.
NAMES = [name for name, _, _ in CHARTS if name != "types"]


def empty_doc() -> dict[str, Any]:
    """The document of a vault with no job: every list empty, every count zero."""
    doc = fixture()
    doc["totals"] = {
        "jobs": 0, "images": 0, "undated": 0, "first": None, "last": None, "days_active": 0
    }  # fmt: skip
    activity = doc["activity"]
    for key in ("per_day", "per_week", "per_month", "heatmap"):
        activity[key] = []
    activity["hour_weekday"] = [[0] * 7 for _ in range(24)]
    activity["streaks"]["longest"] = {"days": 0, "start": None, "end": None}
    activity["sessions"] = {"count": 0, "gap_minutes": 30, "mean_jobs": 0.0, "longest_jobs": 0}
    evolution = doc["evolution"]
    evolution["models"] = evolution["params"] = evolution["prompt_words"] = []
    evolution["follow_ups"] = {"grids": 0, "grids_followed": 0, "share": 0.0, "per_month": []}
    doc["terms"]["top"] = doc["terms"]["trends"] = doc["terms"]["signature"] = []
    doc["ratings"]["per_month"] = []
    doc["cost"].update(gpu_minutes=0.0, total=0.0, per_month=[])
    return doc


def test_each_chart_is_an_inline_svg_that_parses_and_draws() -> None:
    svgs = chart_svgs(with_types(fixture()))
    assert [name for name, _ in svgs] == [name for name, _, _ in CHARTS]
    ids: list[str] = []
    for name, svg in svgs:
        root = ET.fromstring(svg)
        assert root.tag == "{http://www.w3.org/2000/svg}svg", name
        # Scales to its container: the viewBox stays, fixed sizes go.
        assert root.get("viewBox") and root.get("width") is None, name
        # Marks drawn: paths and glyph uses, or a heatmap's pixels as an inline image.
        drawn = [e for e in root.iter() if e.tag.split("}")[1] in ("path", "use", "image")]
        assert len(drawn) > 5, name
        ids += [e.get("id", "") for e in root.iter() if e.get("id")]
    # Charts share one page: an id used twice would clip one chart with another's shape.
    assert len(ids) == len(set(ids))


def test_month_ticks_are_dates_and_count_ticks_whole() -> None:
    svg = one_chart(fixture(), "activity")
    # Text stays text (svg.fonttype none): the tick labels can be read back.
    labels = re.findall(r">([^<>]+)</text>", svg)
    assert "2025" in labels and "Mar" in labels, labels
    counts = [int(t) for t in labels if t.isdigit() and len(t) < 4]
    assert counts[:2] == [0, 100] or counts == sorted(counts), labels
    assert not [t for t in labels if re.fullmatch(r"\d+\.\d+", t)], labels


def test_report_page_is_self_contained() -> None:
    page = report_html(fixture())
    assert page.startswith("<!doctype html>")
    assert page.count("<svg") == len(NAMES)
    # Nothing fetched: no remote address, no script or style from a file.
    links = re.findall(r"""(?:src|href)\s*=\s*["']([^"']*)""", page)
    assert links and all(link.startswith(("#", "data:image/png;base64,")) for link in links)
    assert "@import" not in page
    assert all(u.startswith("#") for u in re.findall(r"url\(([^)]*)\)", page))
    assert "estimate" in page
    assert "4.00 USD" in page  # the price a fast hour, with the table it went into


def test_the_documents_numbers_are_on_the_page() -> None:
    doc = fixture()
    page = report_html(doc)
    assert f"<b>{doc['totals']['jobs']}</b>" in page
    assert "neon" in page and "38.7" in page  # the largest rising term and its G²
    assert "2024-11-20 to 2025-04-10" in page


@pytest.mark.parametrize("fmt", ["pdf", "png", "svg"])
def test_chart_files_are_what_they_say(fmt: str) -> None:
    data = render(fixture(), fmt)
    if fmt == "pdf":
        assert data.startswith(b"%PDF-") and data.rstrip().endswith(b"%%EOF")
        assert b"/Type /Page" in data
    elif fmt == "png":
        from PIL import Image

        assert data.startswith(b"\x89PNG\r\n\x1a\n")
        with Image.open(io.BytesIO(data)) as picture:
            picture.load()
            width, height = picture.size
            assert width >= 800 and height > 2 * width
            # Drawn, not blank: many colours, the bars' blue among them.
            colours = picture.convert("RGB").getcolors(maxcolors=1 << 20) or []
            assert len(colours) > 50
            assert any(rgb == (0x4E, 0x79, 0xA7) for _, rgb in colours)
    else:
        root = ET.fromstring(data)
        assert root.tag == "{http://www.w3.org/2000/svg}svg"
        axes = [g for g in root.iter() if (g.get("id") or "").startswith("axes_")]
        assert len(axes) >= len(NAMES)


def test_same_document_same_files() -> None:
    doc = fixture()
    # Several times: a clip id hashed from layout floats differed in about a third of runs.
    first = render(doc, "svg")
    assert all(render(doc, "svg") == first for _ in range(5))
    assert [chart_svgs(doc) for _ in range(3)].count(chart_svgs(doc)) == 3
    assert render(doc, "pdf") == render(doc, "pdf")
    assert report_html(doc) == report_html(doc)


@pytest.mark.parametrize("fmt", ["html", "pdf", "png", "svg"])
def test_an_empty_vault_still_renders(fmt: str) -> None:
    data = render(empty_doc(), fmt)
    assert len(data) > 1000
    if fmt == "html":
        assert b"no dated jobs" in data


def _browser() -> tuple[str, Any]:
    return system_chromium()


@pytest.mark.parametrize(
    "viewport",
    [{"width": 1280, "height": 900}, {"width": 390, "height": 844}],
    ids=["desktop", "phone"],
)
def test_report_in_chromium(viewport: dict[str, int], tmp_path: Path) -> None:
    chromium, sync_api = _browser()
    page_file = tmp_path / "report.html"
    page_file.write_bytes(render(fixture(), "html"))
    shot = tmp_path / "report.png"
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=chromium,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        try:
            context = browser.new_context(viewport=viewport, device_scale_factor=1)
            page = context.new_page()
            errors: list[str] = []
            requests: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("request", lambda r: requests.append(r.url))
            page.goto(page_file.as_uri())
            width = page.evaluate("document.documentElement.clientWidth")
            # Nothing wider than the screen: a phone reads it without scrolling sideways.
            assert page.evaluate("document.documentElement.scrollWidth") <= width
            boxes = page.eval_on_selector_all(
                "svg.chart",
                "ss => ss.map(s => { const b = s.getBoundingClientRect();"
                " return [b.left, b.top, b.width, b.height,"
                " s.querySelectorAll('path,use,image').length]; })",
            )
            assert len(boxes) == len(NAMES)
            for _left, _top, w, h, marks in boxes:
                assert w >= 0.8 * min(width, 1000) - 40 and h >= 0.2 * w and marks > 5, boxes
            page.screenshot(path=str(shot), full_page=True)
            assert errors == [] and requests == [page_file.as_uri()], (errors, requests)
        finally:
            browser.close()
    # The charts were painted: each one's part of the screenshot holds more than the page's
    # white and grey.
    from PIL import Image

    with Image.open(shot) as picture:
        rgb = picture.convert("RGB")
        for left, top, w, h, _ in boxes:
            crop = rgb.crop((int(left), int(top), int(left + w), int(top + h)))
            colours = crop.getcolors(maxcolors=1 << 20) or []
            assert len(colours) > 20, (left, top, len(colours))


def test_terminal_output_matches_the_golden_copy() -> None:
    """tests/insights_terminal.txt is the fixture as `mjvault stats` prints it; a change to
    the text is a change to that file, reviewed with it."""
    from mjvault.insights.render.terminal import insights_lines

    golden = (HERE / "insights_terminal.txt").read_text(encoding="utf-8")
    assert "\n".join(insights_lines(fixture())) + "\n" == golden


def test_sparkline_scales_to_the_peak_and_leaves_zero_blank() -> None:
    from mjvault.insights.render.terminal import sparkline

    assert sparkline([0, 1, 2, 4, 8]) == " ▂▃▅█"
    assert sparkline([0.5, 1.0], top=1.0) == "▅█"
    assert sparkline([0, 0]) == "  " and sparkline([]) == ""


def test_terminal_output_of_an_empty_vault() -> None:
    from mjvault.insights.render.terminal import insights_lines

    text = "\n".join(insights_lines(empty_doc()))
    assert "no dated job" in text and "(none)" in text and "ESTIMATE" in text


def _vault_with_jobs(vault: Any) -> None:
    from tests.conftest import png_bytes

    with vault.writer("import") as writer:
        image = writer.put_media(png_bytes(1, size=2000))
        for job_id, day, command in (
            ("a", "2024-03-01T10:00:00Z", "a red fox --v 6.1 --ar 16:9"),
            ("b", "2024-05-09T22:00:00Z", "blue cat in snow --niji 6"),
        ):
            record = {"id": job_id, "enqueue_time": day, "type": "grid", "full_command": command}
            writer.add_job(json.dumps(record).encode(), [image])


def test_report_command_writes_each_format(
    vault: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from config_helpers import run_cli as run_in_process

    _vault_with_jobs(vault)
    at = ("--vault", str(vault.path))
    page = tmp_path / "insights.html"
    done = run_in_process(capsys, *at, "report", str(page))
    assert done.code == 0 and "2 jobs" in done.out, done.err
    html = page.read_text(encoding="utf-8")
    assert html.count("<svg") == len(CHARTS) and "2024-03-01 to 2024-05-09" in html
    # The format asked for wins over the name's ending.
    forced = tmp_path / "charts.out"
    assert run_in_process(capsys, *at, "report", str(forced), "--format", "pdf").code == 0
    assert forced.read_bytes().startswith(b"%PDF-")
    png = tmp_path / "charts.png"
    result = run_in_process(capsys, *at, "--json", "report", str(png), "--since", "2024-05-01")
    assert result.code == 0 and result.json() == {
        "report": str(png), "format": "png", "bytes": png.stat().st_size, "jobs": 1
    }  # fmt: skip
    assert png.read_bytes().startswith(b"\x89PNG")
    filtered = tmp_path / "cats.html"
    assert run_in_process(capsys, *at, "report", str(filtered), "cat").code == 0
    assert "matching cat" in filtered.read_text(encoding="utf-8")


def test_report_into_a_missing_folder_is_refused_before_counting(
    vault: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from config_helpers import run_cli as run_in_process

    target = tmp_path / "no" / "such" / "report.html"
    done = run_in_process(capsys, "--vault", str(vault.path), "report", str(target))
    assert done.code == 2 and f"{target.parent} does not exist" in done.err
    assert not (tmp_path / "no").exists()


def test_a_long_span_shows_the_last_53_weeks_of_days() -> None:
    from datetime import date, timedelta

    doc = fixture()
    start = date(2022, 1, 3)
    days = [start + timedelta(days=i) for i in range(900)]
    doc["activity"]["heatmap"] = [
        {"day": d.isoformat(), "weekday": d.weekday(), "jobs": 1, "level": 1 + i % 4}
        for i, d in enumerate(days)
    ]
    svg = one_chart(doc, "heatmap")
    labels = " ".join(re.findall(r">([^<>]+)</text>", svg))
    assert "the last 53 weeks" in labels and "2022" not in labels and "2023" in labels


def test_a_long_weekly_series_is_summed_to_fit_a_line() -> None:
    from mjvault.insights.render.terminal import SPARK_WIDTH, buckets, insights_lines

    assert buckets([1, 2, 3], 60) == (1, [1.0, 2.0, 3.0])
    size, sums = buckets(list(range(150)), 60)
    assert size == 3 and len(sums) == 50 and sum(sums) == sum(range(150))
    doc = fixture()
    doc["activity"]["per_week"] = [
        {"week": f"W{i}", "jobs": i % 7, "images": 0} for i in range(200)
    ]
    line = next(x for x in insights_lines(doc) if x.startswith("per 4 weeks"))
    assert len(line.split(" W0 ")[1].split(" W199")[0]) <= SPARK_WIDTH


@settings(max_examples=15, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=3_000_000), min_size=1, max_size=30))
def test_count_ticks_are_whole_evenly_spaced_and_reach_the_peak(jobs: list[int]) -> None:
    """Whatever the counts: the y axis reads 0, then whole numbers in equal steps, up to at
    least the busiest month, written out (no 2.5, no 1e6)."""
    doc = fixture()
    months = [f"{2020 + i // 12}-{i % 12 + 1:02d}" for i in range(len(jobs))]
    doc["activity"]["per_month"] = [
        {"month": m, "jobs": n, "images": n} for m, n in zip(months, jobs, strict=True)
    ]
    svg = one_chart(doc, "activity")
    root = ET.fromstring(svg)
    axis = next(e for e in root.iter() if e.get("id") == "activity-matplotlib.axis_2")
    labels = [t.text or "" for t in axis.iter("{http://www.w3.org/2000/svg}text")]
    assert all(re.fullmatch(r"\d{1,3}(,\d{3})*", t) for t in labels), labels
    ticks = [int(t.replace(",", "")) for t in labels]
    assert ticks[0] == 0 and len(ticks) >= 2
    steps = {b - a for a, b in zip(ticks, ticks[1:], strict=False)}
    assert len(steps) == 1, ticks
    # The axis ends within a step above the busiest month: the next tick would clear it.
    assert ticks[-1] + steps.pop() > max(jobs), (ticks, max(jobs))


def test_a_single_job_is_counted_on_ticks_0_and_1() -> None:
    doc = fixture()
    doc["activity"]["per_month"] = [{"month": "2024-01", "jobs": 1, "images": 1}]
    svg = one_chart(doc, "activity")
    root = ET.fromstring(svg)
    axis = next(e for e in root.iter() if e.get("id") == "activity-matplotlib.axis_2")
    assert [t.text for t in axis.iter("{http://www.w3.org/2000/svg}text")] == ["0", "1"]


def test_the_breakdown_by_type_is_drawn_when_present_and_left_out_when_absent() -> None:
    from mjvault.insights.render.terminal import insights_lines

    plain = fixture()
    assert [name for name, _, _ in charts_for(plain)] == NAMES
    assert "Job types" not in report_html(plain)
    assert not [x for x in insights_lines(plain) if x.startswith("by job type")]
    doc = with_types(fixture())
    svg = one_chart(doc, "types")
    labels = re.findall(r">([^<>]+)</text>", svg)
    assert {"grid", "upscale"} <= set(labels), labels
    page = report_html(doc)
    assert "Job types" in page and "<td>grid</td><td class=n>212</td>" in page
    lines = insights_lines(doc)
    at = lines.index("by job type (jobs, share, jobs a month)")
    rows = {x.split()[0]: int(x.split()[1]) for x in lines[at + 1 : at + 3]}
    assert rows == {"grid": 212, "upscale": 91}
    # The totals count jobs without a date too (in no month): they come from types.total.
    doc["types"]["total"][0]["jobs"] += 3
    lines = insights_lines(doc)
    assert lines[at + 1].split()[:2] == ["grid", "215"]
    # A document with months but no totals: the months summed.
    del doc["types"]["total"]
    assert insights_lines(doc)[at + 1].split()[:2] == ["grid", "212"]


def test_types_beyond_six_are_drawn_as_other() -> None:
    from mjvault.insights.render.charts import type_series

    doc = fixture()
    doc["types"] = {
        "per_month": [
            {"month": "2025-01", "jobs": {f"t{i}": 10 - i for i in range(9)}},
            {"month": "2025-02", "jobs": {"t0": 1}},
        ]
    }
    found = type_series(doc)
    assert found is not None
    months, series = found
    assert months == ["2025-01", "2025-02"]
    assert list(series) == ["t0", "t1", "t2", "t3", "t4", "other"]
    assert series["other"] == [5 + 4 + 3 + 2, 0] and series["t0"] == [10, 1]
    doc["types"] = {"per_month": [{"month": "2025-01", "weird": 3}]}
    assert type_series(doc) is None  # a shape not understood: no chart rather than a wrong one


def _poster_boxes(doc: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    from mjvault.insights.render.charts import poster_figure, style

    with style():
        figure = poster_figure(doc, "t")
        axes = {ax.get_label(): ax for ax in figure.axes if ax.get_label()}
        from matplotlib.backends.backend_agg import FigureCanvasAgg

        canvas = FigureCanvasAgg(figure)
        canvas.draw()  # the layout the PNG gets
        return canvas.get_renderer(), axes


def test_the_hours_colour_bar_sits_beside_its_chart_and_legends_under_titles() -> None:
    renderer, axes = _poster_boxes(with_types(fixture()))
    hours = axes["hours"]
    box = hours.get_window_extent(renderer)
    (scale,) = hours.child_axes
    bar = scale.get_window_extent(renderer)
    # Right of the grid by a few pixels, as tall as it: not in the figure's far margin.
    assert 0 <= bar.x0 - box.x1 < 0.03 * box.width and abs(bar.height - box.height) < 2
    labels = [t.get_text() for t in scale.get_yticklabels() if t.get_text()]
    assert labels and all(re.fullmatch(r"\d+", t) for t in labels), labels
    for name in ("activity", "types", "models", "params", "follow-ups", "ratings"):
        ax = axes[name]
        legend = ax.get_legend().get_window_extent(renderer)
        plot = ax.get_window_extent(renderer)
        title = ax.title.get_window_extent(renderer)
        assert legend.y0 >= plot.y1 - 1, name  # above the plot, over no bar
        assert title.y0 >= legend.y1 - 1, name  # under the title, clear of it
        # At the left, where a phone shows a chart that scrolls inside its card.
        assert legend.x0 - plot.x0 < 0.05 * plot.width, name
    # The monthly charts share one span, so they line up one under another.
    spans = {axes[n].get_xlim() for n in ("activity", "weeks", "models", "cost", "ratings")}
    assert len(spans) == 1, spans


@pytest.mark.parametrize("name", ["weeks", "follow-ups", "ratings", "types"])
def test_new_count_charts_have_whole_number_ticks(name: str) -> None:
    svg = one_chart(with_types(fixture()), name)
    root = ET.fromstring(svg)
    axis = next(e for e in root.iter() if e.get("id") == f"{name}-matplotlib.axis_2")
    ticks = [t.text or "" for t in axis.iter("{http://www.w3.org/2000/svg}text")]
    assert len(ticks) >= 2 and all(re.fullmatch(r"\d{1,3}(,\d{3})*", t) for t in ticks), ticks


def test_signature_terms_ratings_and_streaks_are_on_the_page() -> None:
    doc = fixture()
    page = report_html(doc)
    for month in doc["terms"]["signature"]:
        for x in month["terms"]:
            assert f"{x['term']} ({x['g2']:.1f})" in page
    assert "Likes and ranks per month" in page and "<td>2024-12</td><td class=n>3</td>" in page
    assert "9 days (2024-12-02 to 2024-12-10)" in page and "current streak" in page
    assert "longest session" in page and "31 jobs" in page


def test_a_ratingless_archive_says_so_rather_than_drawing_zeros() -> None:
    doc = fixture()
    doc["ratings"]["per_month"] = [
        {**m, "liked": 0, "ranked": 0, "mean_rank": None} for m in doc["ratings"]["per_month"]
    ]
    svg = one_chart(doc, "ratings")
    assert "no like or rank in the records" in svg


def test_an_anonymized_document_keeps_its_terms_and_says_it_is_anonymized() -> None:
    from mjvault.insights.render.anonymize import anonymize_terms
    from mjvault.insights.render.terminal import insights_lines

    doc = anonymize_terms(fixture())
    page = report_html(doc)
    assert "Anonymized: terms never include a prompt's URLs." in page and "portrait" in page
    text = "\n".join(insights_lines(doc))
    assert "(anonymized: URLs never counted)" in text and "portrait" in text


def test_hours_are_labelled_with_the_documents_time_zone() -> None:
    from mjvault.insights.render.terminal import insights_lines

    doc = fixture()
    assert "(UTC)" in one_chart(doc, "hours")  # a document without one: UTC
    doc["activity"]["timezone"] = "Europe/Berlin"
    assert "Jobs by weekday and hour (Europe/Berlin)" in one_chart(doc, "hours")
    assert any(x.endswith("23 (Europe/Berlin)") for x in insights_lines(doc))


@settings(max_examples=30, deadline=None)
@given(
    st.lists(
        st.dictionaries(
            st.sampled_from([f"type{i}" for i in range(10)]),
            st.integers(min_value=0, max_value=10_000),
            max_size=10,
        ),
        min_size=1,
        max_size=24,
    )
)
def test_types_drawn_add_up_to_the_documents_counts(rows: list[dict[str, int]]) -> None:
    """However many types: at most six series, and each month's series sum to its jobs."""
    from mjvault.insights.render.charts import MOST_MODELS, type_series

    doc = {"types": {"per_month": [{"month": f"2024-{i % 12 + 1:02d}", "jobs": r}
                                   for i, r in enumerate(rows)]}}  # fmt: skip
    found = type_series(doc)
    assert found is not None
    months, series = found
    assert len(months) == len(rows) and len(series) <= MOST_MODELS
    for i, row in enumerate(rows):
        assert sum(values[i] for values in series.values()) == sum(row.values())
    totals = [sum(v) for name, v in series.items() if name != "other"]
    assert totals == sorted(totals, reverse=True)  # the most used first


def test_follow_ups_without_any_say_so() -> None:
    doc = fixture()
    follow = doc["evolution"]["follow_ups"]
    follow["per_month"] = [{**m, "grids": 0, "follow_ups": 0} for m in follow["per_month"]]
    assert "no grid and no follow-up" in one_chart(doc, "follow-ups")


def test_a_long_span_stacks_months_as_one_shape_a_series() -> None:
    """Ten years by type and model: a stepped area a series, not 120 bars each; the months'
    values still make the top edge (the tallest month reaches the axis's highest tick)."""
    doc = fixture()
    months = [f"{2015 + i // 12}-{i % 12 + 1:02d}" for i in range(120)]
    doc["activity"]["per_month"] = [{"month": m, "jobs": 10, "images": 40} for m in months]
    doc["types"] = {
        "per_month": [
            {"month": m, "jobs": {"grid": 6 + i % 5, "upscale": 3, "video": 1}}
            for i, m in enumerate(months)
        ]
    }
    doc["evolution"]["models"] = [
        {"month": m, "jobs": 10, "share": {"v 6": 0.5, "v 7": 0.5}} for m in months
    ]
    svgs = dict(chart_svgs(doc))
    for name in ("types", "models"):
        assert svgs[name].count("<path") < 60, (name, svgs[name].count("<path"))
    short = with_types(fixture())  # six months: bars
    assert one_chart(short, "types").count("<path") > 2 * 6
    root = ET.fromstring(svgs["types"])
    axis = next(e for e in root.iter() if e.get("id") == "types-matplotlib.axis_2")
    ticks = [int(t.text or "0") for t in axis.iter("{http://www.w3.org/2000/svg}text")]
    assert ticks[-1] <= 14 < ticks[-1] + (ticks[1] - ticks[0]), ticks


def test_stats_tz_moves_days_and_a_bad_zone_is_one_line(
    vault: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    from config_helpers import run_cli as run_in_process

    _vault_with_jobs(vault)
    at = ("--vault", str(vault.path), "--json")
    utc = run_in_process(capsys, *at, "stats", "--no-storage", "--tz", "UTC")
    tokyo = run_in_process(capsys, *at, "stats", "--no-storage", "--tz", "Asia/Tokyo")
    assert utc.code == 0 and tokyo.code == 0, (utc.err, tokyo.err)
    # 22:00 UTC on 9 May is 07:00 on 10 May in Tokyo.
    assert utc.json()["activity"]["timezone"] == "UTC"
    assert tokyo.json()["activity"]["timezone"] == "Asia/Tokyo"
    assert "2024-05-09" in json.dumps(utc.json()["activity"])
    assert "2024-05-10" in json.dumps(tokyo.json()["activity"])
    bad = run_in_process(capsys, "--vault", str(vault.path), "stats", "--tz", "Mars/Olympus")
    assert bad.code != 0 and "unknown time zone 'Mars/Olympus'" in bad.err
    assert "Traceback" not in bad.err and len(bad.err.strip().splitlines()) == 1
