#!/usr/bin/env python3
"""Embeddings: the cosine search over stored vectors, and `mjvault embed`'s images per second.

    python scripts/bench/bench_embed.py search [--vectors 100000 1000000] [--dims 512] [--runs 5]
    python scripts/bench/bench_embed.py images [--images 200] [--side 1024] [--runs 3]

``search``: a vault whose cache holds ``--vectors`` random unit vectors (float16, blocks of
1024, written straight into the store), plain and encrypted; a query scored against all of
them (semantic.top_rows over EmbeddingStore.blocks, top 20), each run in a fresh child (peak
RSS its own), beside the anchor: the same product over the vectors held in memory as one
float16 matrix (no reading, no unsealing, no merging: the floor of an exhaustive search in
numpy).

``images``: a generated image graph sized like a real image tower (four strided
convolutions, 64 to 512 channels, global pool, a 512-dim projection: ~1.6 GFLOPs at 224 px,
about a third of CLIP ViT-B/32's 4.4), run by `embed_images` over a vault of ``--images``
generated PNGs of ``--side`` px (a Midjourney image's size), beside the model alone on
ready pixels and the decode and preprocess alone: images per second, best and median.
Vaults are made under a temp folder and deleted.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from mjvault import Vault  # noqa: E402
from mjvault.store.crypto import KdfParams  # noqa: E402

PASSPHRASE = "bench passphrase"
CHEAP = KdfParams(iterations=1, lanes=1, memory_cost_kib=8 * 1024)  # a bench, not a secret


def _vault(path: Path, encrypted: bool) -> Vault:
    if encrypted:
        return Vault.init(path, encrypt=True, passphrase=PASSPHRASE, kdf=CHEAP)
    return Vault.init(path)


def fill_vectors(path: Path, count: int, dims: int, encrypted: bool) -> None:
    from mjvault.similarity.embeddings import BLOCK, EmbeddingStore

    vault = _vault(path, encrypted)
    rng = np.random.default_rng(1)
    with EmbeddingStore.open(vault, writable=True) as store:
        store.note_model("b" * 64, dims, "/bench.onnx", 1, 1)
        store.commit()
        for start in range(0, count, BLOCK):
            n = min(BLOCK, count - start)
            vectors = rng.standard_normal((n, dims), dtype=np.float32)
            vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
            ids = [os.urandom(32).hex() for _ in range(n)]
            store.add_block("b" * 64, ids, vectors)
    vault.close()


def search_once(path: Path, dims: int, encrypted: bool, anchor: bool) -> dict[str, float]:
    """One query in this process (a child): seconds and peak RSS."""
    from mjvault.similarity.embeddings import EmbeddingStore
    from mjvault.similarity.semantic import top_rows

    vault = Vault.open(path, passphrase=PASSPHRASE if encrypted else None)
    rng = np.random.default_rng(2)
    query = rng.standard_normal(dims).astype(np.float32)
    query /= np.linalg.norm(query)
    with EmbeddingStore.open(vault) as store:
        if anchor:
            matrix = np.concatenate([b.vectors for b in store.blocks("b" * 64)])
            started = time.perf_counter()
            scores = np.einsum("ij,j->i", matrix, query, dtype=np.float32)
            best = np.argpartition(-scores, 19)[:20]
            took = time.perf_counter() - started
            assert len(best) == 20
        else:
            started = time.perf_counter()
            hits = top_rows(store.blocks("b" * 64), query, 20)
            took = time.perf_counter() - started
            assert len(hits) == 20
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"seconds": took, "rss_mb": rss}


def _child(*args: str) -> dict[str, float]:
    done = subprocess.run(
        [sys.executable, __file__, *args], capture_output=True, text=True, check=True
    )
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def bench_search(counts: list[int], dims: int, runs: int) -> None:
    root = Path(tempfile.mkdtemp(prefix="bench-embed-"))
    try:
        for count in counts:
            for encrypted in (False, True):
                path = root / f"v{count}{'e' if encrypted else ''}"
                started = time.perf_counter()
                fill_vectors(path, count, dims, encrypted)
                filled = time.perf_counter() - started
                size = (path / "cache" / "embeddings.sqlite").stat().st_size / 1e6
                for anchor in (False, True):
                    times, rss = [], []
                    for _ in range(runs):
                        got = _child(
                            "_search",
                            str(path),
                            str(dims),
                            "1" if encrypted else "0",
                            "1" if anchor else "0",
                        )
                        times.append(got["seconds"] * 1000)
                        rss.append(got["rss_mb"])
                    label = "in-memory float16 (anchor)" if anchor else "store, block by block"
                    print(
                        f"{count:>9,} x {dims} {'sealed' if encrypted else 'plain '}  {label:<28}"
                        f" best {min(times):7.1f} ms  median {statistics.median(times):7.1f} ms"
                        f"  peak RSS {max(rss):6.0f} MB  (file {size:,.0f} MB, filled in"
                        f" {filled:.0f} s)",
                        flush=True,
                    )
                shutil.rmtree(path)
    finally:
        shutil.rmtree(root, ignore_errors=True)


# -- images per second ----------------------------------------------------------------------
def conv_model(path: Path) -> Path:
    """Four strided convolutions (3→64 k7, 64→128, 128→256, 256→512 k3), ReLU, global mean
    pool, a 512×512 projection: ~1.6 GFLOPs per 224 px image."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    nodes, inits = [], []
    channels = [3, 64, 128, 256, 512]
    prev = "pixels"
    for i in range(4):
        k = 7 if i == 0 else 3
        w = rng.standard_normal((channels[i + 1], channels[i], k, k)).astype(np.float32) * 0.05
        inits.append(numpy_helper.from_array(w, f"w{i}"))
        nodes.append(
            helper.make_node("Conv", [prev, f"w{i}"], [f"c{i}"], strides=[2, 2], pads=[k // 2] * 4)
        )
        nodes.append(helper.make_node("Relu", [f"c{i}"], [f"r{i}"]))
        prev = f"r{i}"
    nodes.append(helper.make_node("ReduceMean", [prev], ["pooled"], axes=[2, 3], keepdims=0))
    proj = rng.standard_normal((512, 512)).astype(np.float32) * 0.05
    inits.append(numpy_helper.from_array(proj, "proj"))
    nodes.append(helper.make_node("MatMul", ["pooled", "proj"], ["image_embeds"]))
    graph = helper.make_graph(
        nodes,
        "bench-image",
        [helper.make_tensor_value_info("pixels", TensorProto.FLOAT, ["N", 3, 224, 224])],
        [helper.make_tensor_value_info("image_embeds", TensorProto.FLOAT, ["N", 512])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, path)
    return path


def fill_images(path: Path, count: int, side: int) -> None:
    from PIL import Image

    vault = Vault.init(path)
    rng = np.random.default_rng(5)
    base = rng.integers(0, 255, (side // 8, side // 8, 3), dtype=np.uint8)
    with vault.writer("bench") as writer:
        for n in range(count):
            # Smooth content (an upscaled noise field) shifted per image: PNG sizes near a
            # real render's, every image distinct.
            small = Image.fromarray(np.roll(base, n, axis=(0, 1)))
            image = small.resize((side, side), Image.Resampling.BICUBIC)
            out = io.BytesIO()
            image.save(out, "PNG", compress_level=1)
            media = writer.put_media(out.getvalue())
            record = {
                "id": f"{n:08x}-1111-4222-8333-444444444444",
                "prompt": f"bench {n}",
                "type": "upscale",
                "enqueue_time": "2024-01-01 10:00:00.000000",
            }
            writer.add_job(json.dumps(record).encode(), [media])
    vault.close()


def images_once(path: Path, model_path: Path, part: str) -> dict[str, float]:
    from mjvault.similarity.embeddings import embed_images, head_images
    from mjvault.similarity.onnx_models import ImageModel

    vault = Vault.open(path)
    model = ImageModel.load(model_path)
    images = list(head_images(vault))
    if part == "run":
        shutil.rmtree(path / "cache", ignore_errors=True)
        started = time.perf_counter()
        report = embed_images(vault, model)
        took = time.perf_counter() - started
        assert report.embedded == len(images)
    elif part == "decode":
        started = time.perf_counter()
        for image in images:
            model.pixels(vault.read_object(image))
        took = time.perf_counter() - started
    else:
        pixels = [model.pixels(vault.read_object(images[0]))] * len(images)
        started = time.perf_counter()
        model.embed(pixels)  # type: ignore[arg-type]
        took = time.perf_counter() - started
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"per_second": len(images) / took, "rss_mb": rss}


def bench_images(count: int, side: int, runs: int) -> None:
    root = Path(tempfile.mkdtemp(prefix="bench-embed-"))
    try:
        model = conv_model(root / "conv.onnx")
        fill_images(root / "vault", count, side)
        for part, label in (
            ("decode", "decode + preprocess alone (1 thread)"),
            ("model", "model alone on ready pixels"),
            ("run", "embed_images (the whole run)"),
        ):
            rates, rss = [], []
            for _ in range(runs):
                got = _child("_images", str(root / "vault"), str(model), part)
                rates.append(got["per_second"])
                rss.append(got["rss_mb"])
            print(
                f"{count} images of {side} px  {label:<38} best {max(rates):6.1f}/s"
                f"  median {statistics.median(rates):6.1f}/s  peak RSS {max(rss):5.0f} MB",
                flush=True,
            )
    finally:
        shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "_search":
        _, _, path, dims, encrypted, anchor = sys.argv
        print(json.dumps(search_once(Path(path), int(dims), encrypted == "1", anchor == "1")))
        return
    if len(sys.argv) > 1 and sys.argv[1] == "_images":
        _, _, path, model, part = sys.argv
        print(json.dumps(images_once(Path(path), Path(model), part)))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="what", required=True)
    search = sub.add_parser("search")
    search.add_argument("--vectors", type=int, nargs="+", default=[100_000, 1_000_000])
    search.add_argument("--dims", type=int, default=512)
    search.add_argument("--runs", type=int, default=5)
    images = sub.add_parser("images")
    images.add_argument("--images", type=int, default=200)
    images.add_argument("--side", type=int, default=1024)
    images.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    if args.what == "search":
        bench_search(args.vectors, args.dims, args.runs)
    else:
        bench_images(args.images, args.side, args.runs)


if __name__ == "__main__":
    main()
