"""What a vault holds, counted: jobs and images over time, by type and model, the words and
parameters used most, storage and deduplication, and the history of syncs and imports.

Everything but storage comes from the index, one summary at a time; storage walks the object
files (one ``stat`` each, and the header of each metadata object), so memory stays flat.
"""

from __future__ import annotations

import html
import os
from collections import Counter
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import zstandard

from mjvault.store.codec import ENCODING_ZSTD, FRAME_VERSION, MAGIC_FRAMED
from mjvault.text import search_tokens

if TYPE_CHECKING:
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
    vault: Vault, *, top: int = 20, on_job: Callable[[int], None] | None = None
) -> dict[str, Any]:
    """Counts over every job in the index (HEAD)."""
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
        words.update(w for w in set(search_tokens(summary.prompt)) if _telling(w))
        params.update(f"{k} {v}" if v != "true" else k for k, v in summary.params.items())
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
    disk = 0
    sizes_of_images: dict[str, int] = {}
    with vault.index.reader() as reader:
        for n, oid in enumerate(vault.store.iter_ids(), 1):
            path = vault.store.path(oid)
            try:
                info = os.stat(path)
            except FileNotFoundError:
                continue  # removed by a concurrent gc
            disk += info.st_blocks * 512
            if reader.is_image(oid):
                media["objects"] += 1
                media["bytes"] += info.st_size
                sizes_of_images[oid] = info.st_size
            else:
                meta["objects"] += 1
                meta["bytes"] += info.st_size
                meta["plain_bytes"] += _plain_size(vault, oid, path, info.st_size)
            if on_object is not None and n % PROGRESS_EVERY == 0:
                on_object(PROGRESS_EVERY)
        refs = unique = saved = 0
        for oid, count in reader.image_references():
            refs += count
            unique += 1
            saved += (count - 1) * sizes_of_images.get(oid, 0)
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
        "index_bytes": vault.index.stats()["bytes"],
    }


def _plain_size(vault: Vault, oid: str, path: os.PathLike[str] | str, stored: int) -> int:
    """The plaintext size of a metadata object, from its header (zstd frames carry it)."""
    if vault.store.keys is None:
        with open(path, "rb") as handle:
            head = handle.read(32)
        if head[:4] != MAGIC_FRAMED or len(head) < 6 or head[4] != FRAME_VERSION:
            return stored
        if head[5] != ENCODING_ZSTD:
            return stored - 6
        size = zstandard.frame_content_size(head[6:])
        return size if size >= 0 else stored
    # Encrypted: the size is inside the AEAD, so decrypt (metadata objects are small).
    return len(vault.store.read(oid))


def history_stats(vault: Vault, *, recent: int = 10) -> dict[str, Any]:
    snapshots = vault.snapshots()
    by_source: Counter[str] = Counter(s.source for s in snapshots)
    return {
        "snapshots": len(snapshots),
        "first": snapshots[-1].time.isoformat() if snapshots else None,
        "last": snapshots[0].time.isoformat() if snapshots else None,
        "by_source": dict(by_source.most_common()),
        "recent": [
            {"id": s.id, "time": s.time.isoformat(), "source": s.source, "stats": dict(s.stats)}
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
) -> dict[str, Any]:
    doc = job_stats(vault, top=top, on_job=on_job)
    doc["storage"] = storage_stats(vault, on_object=on_object) if storage else None
    doc["history"] = history_stats(vault)
    return doc


def chart_html(stats: dict[str, Any], title: str = "mjvault: jobs per month") -> str:
    """A self-contained HTML page with an SVG bar chart of jobs and images per month."""
    months = [m for m in stats["per_month"] if m["month"] != "unknown"]
    peak = max((max(m["jobs"], m["images"]) for m in months), default=1) or 1
    bar, gap, height, left, bottom = 14, 6, 320, 60, 70
    width = left + len(months) * (2 * bar + gap) + 20
    parts = []
    for i, m in enumerate(months):
        x = left + i * (2 * bar + gap)
        for j, (key, colour) in enumerate((("jobs", "#4e79a7"), ("images", "#f28e2b"))):
            h = m[key] / peak * height
            parts.append(
                f'<rect x="{x + j * bar}" y="{20 + height - h:.1f}" width="{bar - 1}" height="{h:.1f}" '
                f'fill="{colour}"><title>{html.escape(m["month"])}: {m[key]} {key}</title></rect>'
            )
        parts.append(
            f'<text x="{x + bar}" y="{20 + height + 12}" font-size="10" text-anchor="end" '
            f'transform="rotate(-60 {x + bar} {20 + height + 12})">{html.escape(m["month"])}</text>'
        )
    for k in range(5):
        value = peak * k / 4
        y = 20 + height - height * k / 4
        parts.append(
            f'<line x1="{left - 4}" x2="{width}" y1="{y:.1f}" y2="{y:.1f}" stroke="#ddd"/>'
        )
        parts.append(
            f'<text x="{left - 8}" y="{y + 4:.1f}" font-size="10" text-anchor="end">{value:.0f}</text>'
        )
    svg = (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height + 20 + bottom}" '
        f'role="img" aria-label="{html.escape(title)}">{"".join(parts)}</svg>'
    )
    summary = f"{stats['jobs']} jobs, {stats['images']} images, {stats['first'] or '?'} to {stats['last'] or '?'}"
    return (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title>"
        "<style>body{font-family:system-ui,sans-serif;margin:2em}"
        ".key span{display:inline-block;width:1em;height:1em;margin:0 .3em 0 1em;vertical-align:middle}</style>"
        f"</head><body><h1>{html.escape(title)}</h1><p>{html.escape(summary)}</p>"
        "<p class='key'><span style='background:#4e79a7'></span>jobs"
        "<span style='background:#f28e2b'></span>images</p>"
        f"<div style='overflow-x:auto'>{svg}</div></body></html>\n"
    )


def chart_png(stats: dict[str, Any], *, width: int = 1200, height: int = 500) -> bytes:
    """The same chart as :func:`chart_html`, drawn as a PNG (Pillow's default font)."""
    import io

    from PIL import Image, ImageDraw

    months = [m for m in stats["per_month"] if m["month"] != "unknown"]
    peak = max((max(m["jobs"], m["images"]) for m in months), default=1) or 1
    left, right, top, bottom = 60, 20, 40, 70
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    draw.text(
        (left, 10), f"jobs (blue) and images (orange) per month, {stats['jobs']} jobs", fill="black"
    )
    plot_w, plot_h = width - left - right, height - top - bottom
    for k in range(5):
        y = top + plot_h - plot_h * k / 4
        draw.line([(left, y), (width - right, y)], fill="#dddddd")
        draw.text((4, y - 6), f"{peak * k / 4:.0f}", fill="#555555")
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
