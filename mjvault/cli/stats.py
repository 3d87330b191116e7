"""``mjvault stats``: the archive counted, for people and for scripts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from mjvault.cli.context import AppContext, pass_app
from mjvault.cli.path_args import NonEmptyPath, check_output_file
from mjvault.find.stats import chart_html, chart_png, date_span, month_series, vault_stats


def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"


@click.command("stats")
@click.option("--json", "as_json", is_flag=True, help="Everything as one JSON document.")
@click.option(
    "--chart",
    type=NonEmptyPath(dir_okay=False, path_type=Path),
    default=None,
    metavar="FILE.html|FILE.png",
    help="Also write a chart of jobs and images per month: a PNG for .png, else an HTML page.",
)
@click.option(
    "--top",
    type=click.IntRange(min=1),
    default=15,
    show_default=True,
    help="How many top words and parameters.",
)
@click.option("--no-storage", is_flag=True, help="Skip the walk over object files (faster).")
@click.option(
    "--anonymize",
    is_flag=True,
    help="Count no image-prompt URL among words and parameters; snapshot sources by kind only.",
)
@pass_app
def stats_command(
    app: AppContext, as_json: bool, chart: Path | None, top: int, no_storage: bool, anonymize: bool
) -> None:
    """Jobs and images per month, by type and model version, top prompt words and parameters,
    storage (objects, bytes, dedup savings, metadata compression) and snapshot history."""
    if chart is not None:
        # Before the counting, which takes a while on a large vault; never made up silently.
        check_output_file(chart, "the chart")
    vault = app.open_vault()
    jobs = vault.index.job_count()
    with app.progress(jobs, "jobs", unit="job") as bar:
        doc = vault_stats(vault, top=top, storage=False, on_job=bar.update, anonymize=anonymize)
    if not no_storage:
        from mjvault.find.stats import storage_stats

        with app.progress(None, "objects", unit="obj") as bar:
            doc["storage"] = storage_stats(vault, on_object=bar.update)
    if chart is not None:
        if chart.suffix.lower() == ".png":
            chart.write_bytes(chart_png(doc))
        else:
            chart.write_text(chart_html(doc), encoding="utf-8")
        app.info(f"chart written to {chart}")
    if as_json or app.json_output:
        click.echo(json.dumps(doc, indent=2, ensure_ascii=False))
        return
    _print_human(doc)


def _print_human(doc: dict[str, Any]) -> None:
    echo = click.echo
    echo(
        f"jobs      {doc['jobs']}   images {doc['images']}   missing images {doc['missing_images']}"
    )
    echo(f"span      {date_span(doc).replace(' to ', '  to  ')}")
    echo("\nper month (jobs / images)")
    peak = max((m["jobs"] for m in doc["per_month"]), default=1) or 1
    undated = [m for m in doc["per_month"] if m["month"] == "unknown"]
    for m in month_series(doc["per_month"]) + undated:
        bar = "#" * max(1, round(m["jobs"] / peak * 40)) if m["jobs"] else ""
        echo(f"  {m['month']:<8} {m['jobs']:>7} {m['images']:>8}  {bar}")
    for title, key in (("by type", "by_type"), ("by model version", "by_version")):
        echo(f"\n{title}")
        for name, count in doc[key].items():
            echo(f"  {name:<24} {count:>7}")
    for title, key in (("top prompt words", "top_words"), ("top parameters", "top_params")):
        echo(f"\n{title}")
        echo("  " + (", ".join(f"{name} ({count})" for name, count in doc[key]) or "(none)"))
    storage = doc.get("storage")
    if storage:
        echo("\nstorage")
        echo(
            f"  objects   {storage['objects']} ({_size(storage['bytes'])}, {_size(storage['disk_bytes'])} on disk)"
        )
        echo(f"  media     {storage['media']['objects']} ({_size(storage['media']['bytes'])})")
        meta = storage["metadata"]
        ratio = f", compression {meta['compression_ratio']}x" if meta["compression_ratio"] else ""
        echo(
            f"  metadata  {meta['objects']} ({_size(meta['bytes'])}, {_size(meta['plain_bytes'])} before compression{ratio})"
        )
        dedup = storage["dedup"]
        echo(
            f"  dedup     {dedup['image_references']} image references to {dedup['unique_images']} images, {_size(dedup['saved_bytes'])} saved"
        )
        echo(f"  index     {_size(storage['index_bytes'])}")
    history = doc["history"]
    echo(
        f"\nsnapshots {history['snapshots']}"
        + (f"  ({history['first']} to {history['last']})" if history["snapshots"] else "")
    )
    for name, count in history["by_source"].items():
        echo(f"  {name:<24} {count:>7}")
    for s in history["recent"]:
        st = s["stats"]
        echo(
            f"  {s['id'][:12]}  {s['time'][:19]}  {s['source']:<12} +{st.get('added', 0)} ~{st.get('updated', 0)} -{st.get('removed', 0)}"
        )
