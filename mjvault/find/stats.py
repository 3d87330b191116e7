"""What a vault holds, counted: jobs and images over time, by type and model, the words and
parameters used most, storage and deduplication, and the history of syncs and imports.

Everything but storage comes from the index, one summary at a time; storage walks the loose
object files (one ``stat`` each, and the header of each metadata object) and reads each pack
front to back once (its entries are counted like loose objects, its file's size is what it
takes on disk), so memory stays flat.
"""

from __future__ import annotations

import contextlib
import html
import os
from collections import Counter
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

import zstandard

from mjvault.errors import MjvaultError, ObjectNotFound
from mjvault.find.anonymize import scrub, scrub_params, source_kind
from mjvault.store.codec import ENCODING_ZSTD, ENCODING_ZSTD_DICT, FRAME_VERSION, MAGIC_FRAMED
from mjvault.store.packfile import PackDamaged, Trailer, iter_entry_bytes, read_trailer
from mjvault.text import search_tokens

if TYPE_CHECKING:
    from mjvault.snapshots import Snapshot
    from mjvault.vault import Vault

# Words too common to say anything about a body of work, and the parts of image-prompt URLs.
STOPWORDS = frozenset(
    [
        "a",
        "an",
        "the",
        "of",
        "in",
        "on",
        "at",
        "to",
        "and",
        "or",
        "with",
        "for",
        "by",
        "from",
        "as",
        "is",
        "are",
        "be",
        "it",
        "its",
        "this",
        "that",
        "into",
        "over",
        "under",
        "s",
        "https",
        "http",
        "www",
        "com",
        "cdn",
        "midjourney",
        "png",
        "jpg",
        "webp",
    ]
)
PROGRESS_EVERY = 1000


def version_label(params: dict[str, str]) -> str:
    """``v 6.1``, ``niji 6``, or ``default`` when the job named no model."""
    if "niji" in params:
        return "niji" if params["niji"] == "true" else f"niji {params['niji']}"
    if "version" in params:
        return f"v {params['version']}"
    return "default"


def job_stats(
    vault: Vault,
    *,
    top: int = 20,
    on_job: Callable[[int], None] | None = None,
    anonymize: bool = False,
) -> dict[str, Any]:
    """Counts over every job in the index (HEAD); ``anonymize`` counts no word or parameter
    value of an image-prompt URL (:mod:`mjvault.find.anonymize`)."""
    per_month: dict[str, list[int]] = {}
    by_type: Counter[str] = Counter()
    by_version: Counter[str] = Counter()
    words: Counter[str] = Counter()
    params: Counter[str] = Counter()
    jobs = images = missing = 0
    first = last = None
    for n, summary in enumerate(vault.index.iter_summaries(), 1):
        jobs += 1
        held = sum(1 for image in summary.images if image is not None)
        images += held
        missing += len(summary.images) - held
        month = summary.time.strftime("%Y-%m") if summary.time else "unknown"
        counts = per_month.setdefault(month, [0, 0])
        counts[0] += 1
        counts[1] += held
        if summary.time is not None:
            first = summary.time if first is None or summary.time < first else first
            last = summary.time if last is None or summary.time > last else last
        by_type[summary.type] += 1
        by_version[version_label(summary.params)] += 1
        prompt = scrub(summary.prompt) if anonymize else summary.prompt
        job_params = scrub_params(summary.params) if anonymize else summary.params
        words.update(w for w in set(search_tokens(prompt)) if _telling(w))
        params.update(f"{k} {v}" if v != "true" else k for k, v in job_params.items())
        if on_job is not None and n % PROGRESS_EVERY == 0:
            on_job(PROGRESS_EVERY)
    return {
        "jobs": jobs,
        "images": images,
        "missing_images": missing,
        "first": first.isoformat() if first else None,
        "last": last.isoformat() if last else None,
        "per_month": [
            {"month": month, "jobs": c[0], "images": c[1]} for month, c in sorted(per_month.items())
        ],
        "by_type": dict(by_type.most_common()),
        "by_version": dict(by_version.most_common()),
        "top_words": by_count(words, top),
        "top_params": by_count(params, top),
    }


def _telling(word: str) -> bool:
    # One Latin letter says nothing; one Han or Kana character is a word.
    return word not in STOPWORDS and (len(word) > 1 or not word.isascii())


def by_count(counter: Counter[str], top: int) -> list[list[Any]]:
    return [
        [name, count]
        for name, count in sorted(counter.items(), key=lambda kv: (-kv[1], kv[0]))[:top]
    ]


def storage_stats(
    vault: Vault, *, on_object: Callable[[int], None] | None = None
) -> dict[str, Any]:
    """Objects on disk: media and metadata, bytes and disk use, compression and dedup."""
    media = {"objects": 0, "bytes": 0}
    meta = {"objects": 0, "bytes": 0, "plain_bytes": 0}
    packs = {"files": 0, "bytes": 0}
    disk = 0
    counted = 0

    def count(oid: str, size: int) -> bool:
        """Count one object by kind; True for metadata (whose plaintext size is added)."""
        nonlocal counted
        counted += 1
        if on_object is not None and counted % PROGRESS_EVERY == 0:
            on_object(PROGRESS_EVERY)
        kind = media if reader.is_image(oid) else meta
        kind["objects"] += 1
        kind["bytes"] += size
        return kind is meta

    store = vault.store
    with vault.index.reader() as reader:
        for oid in store.iter_loose_ids():
            path = store.path(oid)
            try:
                info = os.stat(path)
            except FileNotFoundError:
                continue  # removed by a concurrent gc
            disk += info.st_blocks * 512
            if count(oid, info.st_size):
                meta["plain_bytes"] += _plain_size(vault, oid, path, info.st_size)
        for name in store.packs.names():
            try:
                fd = os.open(store.packs.path(name), os.O_RDONLY)
            except FileNotFoundError:
                continue  # removed by a concurrent gc or repack
            try:
                info = os.fstat(fd)
                disk += info.st_blocks * 512
                packs["files"] += 1
                packs["bytes"] += info.st_size
                try:
                    trailer = read_trailer(fd, info.st_size, f"pack {name}")
                    for entry, data in iter_entry_bytes(fd, trailer):
                        if count(entry.hex_id, entry.length):
                            meta["plain_bytes"] += _entry_plain_size(
                                vault, entry.hex_id, data, trailer
                            )
                except PackDamaged:
                    continue  # `mjvault verify` reports it; its objects are not counted
            finally:
                os.close(fd)
        refs = unique = saved = 0
        for oid, references in reader.image_references():
            refs += references
            unique += 1
            if references > 1:  # sizes looked up only for shared images: no map of them all
                with contextlib.suppress(ObjectNotFound):
                    saved += (references - 1) * store.stored_size(oid)
    return {
        "objects": media["objects"] + meta["objects"],
        "bytes": media["bytes"] + meta["bytes"],
        "disk_bytes": disk,
        "media": media,
        "metadata": meta
        | {
            "compression_ratio": round(meta["plain_bytes"] / meta["bytes"], 3)
            if meta["bytes"]
            else None
        },
        "dedup": {"image_references": refs, "unique_images": unique, "saved_bytes": saved},
        "packs": packs,
        "index_bytes": vault.index.stats()["bytes"],
    }


def _plain_size(vault: Vault, oid: str, path: os.PathLike[str] | str, stored: int) -> int:
    """The plaintext size of a metadata object, from its header (zstd frames carry it)."""
    if vault.store.keys is None:
        with open(path, "rb") as handle:
            return _framed_plain_size(handle.read(32), stored)
    # Encrypted: the size is inside the AEAD, so decrypt (metadata objects are small).
    return len(vault.store.read(oid))


def _entry_plain_size(vault: Vault, oid: str, data: bytes, trailer: Trailer) -> int:
    if vault.store.keys is None:
        return _framed_plain_size(data[:32], len(data))
    try:
        return len(vault.store.open_entry(oid, data, trailer.dictionary_id))
    except MjvaultError:
        return len(data)  # damaged: `mjvault verify` says so; counted as stored


def _framed_plain_size(head: bytes, stored: int) -> int:
    if head[:4] != MAGIC_FRAMED or len(head) < 6 or head[4] != FRAME_VERSION:
        return stored
    if head[5] not in (ENCODING_ZSTD, ENCODING_ZSTD_DICT):
        return stored - 6
    size = zstandard.frame_content_size(head[6:])
    return size if size >= 0 else stored


def history_stats(vault: Vault, *, recent: int = 10, anonymize: bool = False) -> dict[str, Any]:
    snapshots = vault.snapshots()

    def source(s: Snapshot) -> str:
        # A sync's source names the account (midjourney:v3:<user id>), an import's a path.
        return source_kind(s.source) if anonymize else s.source

    by_source: Counter[str] = Counter(source(s) for s in snapshots)
    return {
        "snapshots": len(snapshots),
        "first": snapshots[-1].time.isoformat() if snapshots else None,
        "last": snapshots[0].time.isoformat() if snapshots else None,
        "by_source": dict(by_source.most_common()),
        "recent": [
            {"id": s.id, "time": s.time.isoformat(), "source": source(s), "stats": dict(s.stats)}
            for s in snapshots[:recent]
        ],
    }


def vault_stats(
    vault: Vault,
    *,
    top: int = 20,
    storage: bool = True,
    on_job: Callable[[int], None] | None = None,
    on_object: Callable[[int], None] | None = None,
    anonymize: bool = False,
) -> dict[str, Any]:
    doc = job_stats(vault, top=top, on_job=on_job, anonymize=anonymize)
    doc["storage"] = storage_stats(vault, on_object=on_object) if storage else None
    doc["history"] = history_stats(vault, anonymize=anonymize)
    return doc


def month_series(per_month: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every month from the first to the last dated one, the empty ones as zeros: a chart
    that skipped them would draw a quiet half-year as if it were not there."""
    known = {m["month"]: m for m in per_month if m["month"] != "unknown"}
    if not known:
        return []
    last = max(known)
    year, month = int(min(known)[:4]), int(min(known)[5:7])
    series = []
    while True:
        key = f"{year:04d}-{month:02d}"
        series.append(known.get(key, {"month": key, "jobs": 0, "images": 0}))
        if key >= last:
            return series
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)


def integer_ticks(peak: int, most: int = 5) -> list[int]:
    """0 up to at least ``peak`` in at most ``most`` equal whole steps of 1, 2 or 5 × 10^k:
    counts are whole, so a tick reading 2.25 (or two ticks both reading 2) says nothing."""
    peak = max(peak, 1)
    step = 1
    while -(-peak // step) > most:
        step = step * 5 // 2 if str(step)[0] == "2" else step * 2
    top = -(-peak // step) * step
    return list(range(0, top + 1, step))


def date_span(stats: dict[str, Any]) -> str:
    """``2023-05-26 to 2024-03-03``: days, not ISO timestamps with microseconds."""

    def day(value: str | None) -> str:
        if not value:
            return "?"
        try:
            return datetime.fromisoformat(value).date().isoformat()
        except ValueError:
            return value[:10]

    return f"{day(stats.get('first'))} to {day(stats.get('last'))}"


_COLOURS = (("jobs", "#4e79a7"), ("images", "#f28e2b"))


def _chart_svg(months: list[dict[str, Any]], title: str) -> str:
    ticks = integer_ticks(max((max(m["jobs"], m["images"]) for m in months), default=0))
    top = ticks[-1]
    left, right, head, height = 56, 16, 16, 300
    # At least 28 units a month; below ~960 units the chart stretches to the page instead.
    width = max(960, left + right + 28 * len(months))
    slot = (width - left - right) / max(1, len(months))
    bar = min(slot * 0.4, 44.0)
    base = head + height
    upright = slot >= 60  # room for a month's label written across
    label_room = 30 if upright else 64
    parts = []
    for value in ticks:
        y = base - value / top * height
        parts.append(
            f'<line x1="{left - 4}" x2="{width - right}" y1="{y:.1f}" y2="{y:.1f}" '
            f'stroke="{"#999" if value == 0 else "#e3e3e3"}"/>'
            f'<text class="tick" x="{left - 8}" y="{y + 4:.1f}" font-size="12" '
            f'text-anchor="end" fill="#555">{value}</text>'
        )
    for i, m in enumerate(months):
        middle = left + (i + 0.5) * slot
        for j, (key, colour) in enumerate(_COLOURS):
            h = m[key] / top * height
            parts.append(
                f'<rect class="bar" x="{middle - bar + j * bar:.1f}" y="{base - h:.1f}" '
                f'width="{bar - 1:.1f}" height="{h:.1f}" fill="{colour}">'
                f"<title>{html.escape(m['month'])}: {m[key]} {key}</title></rect>"
            )
        label = html.escape(m["month"])
        if upright:
            parts.append(
                f'<text x="{middle:.1f}" y="{base + 18}" font-size="12" text-anchor="middle" '
                f'fill="#333">{label}</text>'
            )
        else:
            parts.append(
                f'<text x="{middle + 4:.1f}" y="{base + 12}" font-size="11" text-anchor="end" '
                f'fill="#333" transform="rotate(-55 {middle + 4:.1f} {base + 12})">{label}</text>'
            )
    # Stretched to the page's width; a long span keeps 28 units a month and scrolls instead.
    size = "width:100%;height:auto" + (f";min-width:{width}px" if width > 960 else "")
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {base + label_room}" '
        f'style="{size}" role="img" aria-label="{html.escape(title)}">{"".join(parts)}</svg>'
    )


def _panel(title: str, rows: list[tuple[str, int]]) -> str:
    peak = max((count for _, count in rows), default=0) or 1
    body = "".join(
        f"<tr><td>{html.escape(name)}</td><td class='n'>{count}</td>"
        f"<td class='b'><i style='width:{100 * count / peak:.0f}%'></i></td></tr>"
        for name, count in rows
    )
    return (
        f"<section class='panel'><h2>{html.escape(title)}</h2>"
        f"<table>{body or '<tr><td>(none)</td></tr>'}</table></section>"
    )


_PAGE_STYLE = (
    "body{font-family:system-ui,sans-serif;margin:0;background:#f4f5f7;color:#222}"
    "main{max-width:1400px;margin:0 auto;padding:1.5em 2em}"
    "h1{font-size:1.5em;margin:0 0 .6em}h2{font-size:1em;margin:0 0 .6em}"
    ".figures{display:flex;flex-wrap:wrap;gap:1em;margin-bottom:1em}"
    ".figures div,.chart,.panel{background:#fff;border-radius:8px;"
    "box-shadow:0 1px 3px rgba(0,0,0,.12)}"
    ".figures div{padding:.6em 1.2em;min-width:8em}"
    ".figures b{display:block;font-size:1.6em}"
    ".chart{padding:1em;overflow-x:auto}"
    ".key{margin:0 0 .5em}.key span{display:inline-block;width:1em;height:1em;"
    "margin:0 .3em 0 1em;vertical-align:middle;border-radius:2px}"
    ".note{color:#666;font-size:.9em;margin:.5em 0 0}"
    ".panels{display:grid;grid-template-columns:repeat(auto-fit,minmax(280px,1fr));"
    "gap:1em;margin-top:1em}"
    ".panel{padding:1em}.panel table{width:100%;border-collapse:collapse;font-size:.9em}"
    ".panel td{padding:.15em .3em}.panel td.n{text-align:right;width:4em}"
    ".panel td.b{width:40%}.panel td.b i{display:block;height:.7em;background:#4e79a7;"
    "border-radius:2px}"
)


def chart_html(stats: dict[str, Any], title: str = "mjvault: jobs per month") -> str:
    """A self-contained HTML page: the vault's figures, an SVG bar chart of jobs and images in
    every month of its span, and its breakdowns by type, model, prompt word and parameter."""
    months = month_series(stats["per_month"])
    undated = sum(m["jobs"] for m in stats["per_month"] if m["month"] == "unknown")
    figures = (
        ("jobs", stats["jobs"]),
        ("images", stats["images"]),
        ("missing images", stats.get("missing_images", 0)),
        ("months", len(months)),
        ("span", date_span(stats)),
    )
    note = (
        f"<p class='note'>{undated} job{'s' if undated != 1 else ''} without a date: counted "
        "above, not in the chart.</p>"
        if undated
        else ""
    )
    panels = "".join(
        _panel(name, [(str(k), int(v)) for k, v in rows])
        for name, rows in (
            ("by type", list(stats.get("by_type", {}).items())),
            ("by model version", list(stats.get("by_version", {}).items())),
            ("top prompt words", stats.get("top_words", [])),
            ("top parameters", stats.get("top_params", [])),
        )
    )
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width,initial-scale=1'>"
        f"<title>{html.escape(title)}</title><style>{_PAGE_STYLE}</style></head><body><main>"
        f"<h1>{html.escape(title)}</h1><div class='figures'>"
        + "".join(f"<div>{html.escape(k)}<b>{html.escape(str(v))}</b></div>" for k, v in figures)
        + "</div><div class='chart'><p class='key'>"
        + "".join(f"<span style='background:{c}'></span>{k}" for k, c in _COLOURS)
        + f"</p>{_chart_svg(months, title)}{note}</div>"
        f"<div class='panels'>{panels}</div></main></body></html>\n"
    )


def chart_png(stats: dict[str, Any], *, width: int = 1200, height: int = 500) -> bytes:
    """The same chart as :func:`chart_html`, drawn as a PNG (Pillow's default font)."""
    import io

    from PIL import Image, ImageDraw

    months = month_series(stats["per_month"])
    ticks = integer_ticks(max((max(m["jobs"], m["images"]) for m in months), default=0))
    peak = ticks[-1]
    left, right, top, bottom = 60, 20, 40, 70
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    draw.text(
        (left, 10),
        f"jobs (blue) and images (orange) per month, {stats['jobs']} jobs, {date_span(stats)}",
        fill="black",
    )
    plot_w, plot_h = width - left - right, height - top - bottom
    for value in ticks:
        y = top + plot_h - plot_h * value / peak
        draw.line([(left, y), (width - right, y)], fill="#dddddd")
        draw.text((4, y - 6), str(value), fill="#555555")
    slot = plot_w / max(1, len(months))
    bar = max(1.0, slot / 2 - 1)
    for i, m in enumerate(months):
        x = left + i * slot
        for j, (key, colour) in enumerate((("jobs", "#4e79a7"), ("images", "#f28e2b"))):
            h = m[key] / peak * plot_h
            if h > 0:
                draw.rectangle(
                    [x + j * bar, top + plot_h - h, x + (j + 1) * bar - 1, top + plot_h],
                    fill=colour,
                )
        # A label per month while they fit, else one per year.
        if slot >= 28 or m["month"].endswith("-01"):
            draw.text(
                (x, top + plot_h + 6 + (i % 2) * 12),
                m["month"] if slot >= 28 else m["month"][:4],
                fill="#333333",
            )
    out = io.BytesIO()
    image.save(out, "PNG", optimize=True)
    return out.getvalue()
