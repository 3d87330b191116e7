"""What a vault holds, counted: jobs and images over time, by type and model, the words and
parameters used most, storage and deduplication, and the history of syncs and imports.
(``mjvault stats`` shows the insights document, :mod:`mjvault.insights`, with the storage
and history counted here; its charts are :mod:`mjvault.insights.render.charts`.)

Everything but storage comes from the index, one summary at a time; storage walks the loose
object files (one ``stat`` each, and the header of each metadata object) and reads each pack
front to back once (its entries are counted like loose objects, its file's size is what it
takes on disk), so memory stays flat.
"""

from __future__ import annotations

import contextlib
import os
from collections import Counter
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from mjvault.errors import MjvaultError, ObjectNotFound
from mjvault.find.anonymize import scrub, scrub_params, source_kind
from mjvault.store.codec import HEAD_SIZE, plain_size_of
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
    for n, summary in enumerate(vault.current_index().iter_summaries(), 1):
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
    index = vault.current_index()
    with index.reader() as reader:
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
        "index_bytes": index.stats()["bytes"],
    }


def _plain_size(vault: Vault, oid: str, path: os.PathLike[str] | str, stored: int) -> int:
    """The plaintext size of a metadata object, from its header (zstd frames carry it)."""
    if vault.store.keys is None:
        with open(path, "rb") as handle:
            return plain_size_of(handle.read(HEAD_SIZE), stored)
    # Encrypted: the size is inside the AEAD, so decrypt (metadata objects are small).
    try:
        return len(vault.store.read(oid))
    except MjvaultError:
        return stored  # damaged: `mjvault verify` says so; counted as stored


def _entry_plain_size(vault: Vault, oid: str, data: bytes, trailer: Trailer) -> int:
    if vault.store.keys is None:
        return plain_size_of(data[:HEAD_SIZE], len(data))
    try:
        return len(vault.store.open_entry(oid, data, trailer.dictionary_id))
    except MjvaultError:
        return len(data)  # damaged: `mjvault verify` says so; counted as stored


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
