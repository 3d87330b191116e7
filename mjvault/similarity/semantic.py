"""Search by meaning: cosine over the stored image vectors (mjvault/similarity/embeddings.py).

A query is a vector: a text's from the text model (``search --semantic``), or an image's
(``similar --semantic``: its stored vector, or the image model's for a file). Every stored
vector is compared, a block at a time (float16 widened to float32, one matrix product per
block), keeping the best ``limit`` rows: memory is a block's whatever the vault's size, and
only the hits' ids are decoded and looked up in the index (docs/design.md, "Embeddings
(optional)").
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mjvault.config import load_config
from mjvault.config.schema import EmbedSection
from mjvault.errors import CorruptObject, JobNotFound, UsageError
from mjvault.reports import Report, json_meta
from mjvault.similarity.embeddings import Block, EmbeddingStore, digest_of
from mjvault.similarity.onnx_models import ImageModel, TextModel
from mjvault.vault import Vault


@dataclass(frozen=True)
class SemanticHit(Report):
    object_id: str
    job_id: str
    index: int  # the image's position in its job
    score: float = field(metadata=json_meta(digits=4))  # cosine similarity, -1 to 1


def settings_of(vault: Vault) -> EmbedSection:
    """The ``[embed]`` settings in effect for this vault (its config.toml over the user's)."""
    return load_config(vault_dir=vault.path).config.embed


def _image_model_path(settings: EmbedSection) -> Path:
    if settings.model is None:
        raise UsageError("no image model yet", hint="run `mjvault embed --model PATH.onnx`")
    return Path(settings.model)


def _score_block(block: Block, query: np.ndarray, limit: int) -> tuple[np.ndarray, np.ndarray]:
    # einsum's own loop widens float16 as it goes: ~10x a BLAS product here, which needs a
    # float32 copy first and, on a busy machine, waits on its threads (docs/design.md).
    scores = np.einsum("ij,j->i", block.vectors, query, dtype=np.float32)
    # A NaN (a vector stored before they were refused) would win every comparison's tie and
    # print as invalid JSON: it ranks last, and top_rows drops it.
    scores[~np.isfinite(scores)] = -np.inf
    if len(scores) > limit:
        best = np.argpartition(-scores, limit - 1)[:limit]
        return scores[best], best
    return scores, np.arange(len(scores))


def top_rows(blocks: Iterator[Block], query: np.ndarray, limit: int) -> list[tuple[float, str]]:
    """The ``limit`` best (score, object id) over ``blocks``, best first (ties by id).

    One thread: a block is ~0.7 ms of arithmetic, and two threads were slower here, not
    faster (docs/design.md)."""
    best_scores = np.empty(0, np.float32)
    best_ids: list[str] = []
    query = query.astype(np.float32)
    if not np.isfinite(query).all():
        raise UsageError("the model gave the query a vector with NaN or infinite numbers")
    for block in blocks:
        if block.vectors.shape[1] != len(query):
            raise UsageError(
                f"the query has {len(query)} dims, the stored vectors "
                f"{block.vectors.shape[1]}: the text model is not the image model's pair"
            )
        scores, rows = _score_block(block, query, limit)
        if len(best_ids) >= limit:
            keep = scores >= best_scores[-1]
            scores, rows = scores[keep], rows[keep]
            if not len(rows):
                continue
        best_scores = np.concatenate([best_scores, scores])
        best_ids = best_ids + [block.image(int(r)) for r in rows]
        order = np.argsort(-best_scores, kind="stable")[:limit]
        best_scores = best_scores[order]
        best_ids = [best_ids[i] for i in order]
    pairs = sorted(
        ((s, i) for s, i in zip(best_scores.tolist(), best_ids, strict=True) if s > -np.inf),
        key=lambda p: (-p[0], p[1]),
    )
    return pairs[:limit]


def _hits(vault: Vault, pairs: list[tuple[float, str]]) -> list[SemanticHit]:
    """Each hit's job and position: the index's image lookup (the first job by id when several
    show the image); an image no job of HEAD shows any more is left out."""
    out = []
    index = vault.current_index()
    for score, image in pairs:
        jobs = sorted(index.jobs_with_image(image))
        for job_id in jobs:
            entry = index.entry(job_id)
            if entry is not None and image in entry.images:
                out.append(SemanticHit(image, job_id, entry.images.index(image), float(score)))
                break
    return out


def search_vector(
    vault: Vault, query: np.ndarray, limit: int = 20, *, settings: EmbedSection | None = None
) -> list[SemanticHit]:
    """The images whose vectors are nearest ``query`` (a unit vector), best first."""
    settings = settings or settings_of(vault)
    path = _image_model_path(settings)
    with EmbeddingStore.open(vault) as store:
        model = digest_of(store, path)
        if not store.dims(model):
            raise UsageError(
                f"no vectors of {path.name} yet", hint="run `mjvault embed` to compute them"
            )
        # A few more than asked: hits whose image left HEAD are dropped.
        try:
            pairs = top_rows(store.blocks(model), query, limit + 8)
        except CorruptObject as exc:
            raise UsageError(f"{exc}", hint="run `mjvault embed` again") from None
    return _hits(vault, pairs)[:limit]


def semantic_search(
    vault: Vault, text: str, limit: int = 20, *, settings: EmbedSection | None = None
) -> list[SemanticHit]:
    """The images nearest a text, by the text model remembered with ``mjvault embed``."""
    settings = settings or settings_of(vault)
    if settings.text_model is None:
        raise UsageError(
            "search --semantic needs a text model",
            hint="run `mjvault embed --model IMAGE.onnx --text-model TEXT.onnx`",
        )
    _image_model_path(settings)
    tokenizer = Path(settings.tokenizer) if settings.tokenizer is not None else None
    text_model = TextModel.load(Path(settings.text_model), tokenizer)
    return search_vector(vault, text_model.embed(text), limit, settings=settings)


def semantic_similar(
    vault: Vault, target: str, limit: int = 20, *, settings: EmbedSection | None = None
) -> list[SemanticHit]:
    """The images nearest an image: ``JOB_ID[:INDEX]`` of the vault (its stored vector) or an
    image file (the image model's vector of it). The image itself comes first when stored."""
    settings = settings or settings_of(vault)
    path = _image_model_path(settings)
    file = Path(target)
    if file.is_file():
        with EmbeddingStore.open(vault) as store:
            digest = digest_of(store, path)
            prep = store.preprocessing(digest)  # as the stored vectors were computed
        model = ImageModel.load(
            path,
            image_size=prep.size if prep else None,
            mean=prep.mean if prep else None,
            std=prep.std if prep else None,
            digest=digest,
        )
        pixels = model.pixels(file.read_bytes())
        if pixels is None:
            raise UsageError(f"{target} is not an image Pillow can read")
        return search_vector(vault, model.embed([pixels])[0], limit, settings=settings)
    job, _, index_text = target.partition(":")
    try:
        index = int(index_text) if index_text else 0
    except ValueError:
        raise UsageError(f"{target!r}: the image index after ':' is a number") from None
    try:
        entry = vault.find_job(job)
    except JobNotFound:
        raise UsageError(f"no job {job} in the vault and no file {target}") from None
    if not 0 <= index < len(entry.images) or entry.images[index] is None:
        raise UsageError(f"job {entry.job_id} has no image {index}")
    image = entry.images[index]
    assert image is not None
    with EmbeddingStore.open(vault) as store:
        vector = store.vector_of(digest_of(store, path), image)
    if vector is None:
        raise UsageError(
            f"image {entry.job_id}:{index} has no vector yet", hint="run `mjvault embed`"
        )
    return search_vector(vault, vector, limit, settings=settings)
