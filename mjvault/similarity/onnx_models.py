"""ONNX models the user supplies, run with onnxruntime: an image tower and a text tower.

Nothing is ever downloaded: a model is a file the user names (``mjvault embed --model``).
What a model needs is read from its graph where the graph says it: the input's name and its
pixel size (a static ``N×3×H×W`` shape), the sequence length of a text model's ids, and the
normalisation from the model's metadata (``mean``, ``std``: three comma-separated numbers;
``image_size``), which an export may carry. What the graph leaves open comes from the
options, else CLIP's preprocessing (224 px, its mean and std), which the public CLIP exports
expect (docs/design.md, "Embeddings (optional)").

onnxruntime and tokenizers are the optional extra ``embed``: without them every path here
fails with one line naming the extra.
"""

from __future__ import annotations

import io
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import blake3
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from mjvault.errors import UsageError

CLIP_SIZE = 224
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
CLIP_CONTEXT = 77  # CLIP's text length in tokens, when the graph leaves it open
EXTRA = "pip install 'mjvault[embed]'"
BATCH = 16  # images per run of a model whose batch dimension is open


def _runtime() -> Any:
    try:
        import onnxruntime
    except ImportError:
        raise UsageError(f"embeddings need onnxruntime: {EXTRA}") from None
    # Fatal only: its warnings are not the user's business, and a failed run is reported as
    # one line of ours (_run), not its log line beside it.
    onnxruntime.set_default_logger_severity(4)
    return onnxruntime


def model_digest(path: Path) -> str:
    """BLAKE3 of the model file (hex): the key its vectors are stored under, so vectors of two
    models (or two versions of one file) are never compared."""
    hasher = blake3.blake3()
    try:
        with open(path, "rb") as handle:
            while chunk := handle.read(1 << 20):
                hasher.update(chunk)
    except OSError as exc:
        raise UsageError(f"cannot read model {path}: {exc.strerror or exc}") from None
    return hasher.hexdigest()


def _session(path: Path) -> Any:
    runtime = _runtime()
    if not path.is_file():
        raise UsageError(f"no model file {path}")
    options = runtime.SessionOptions()
    options.log_severity_level = 4
    try:
        return runtime.InferenceSession(
            os.fspath(path), sess_options=options, providers=["CPUExecutionProvider"]
        )
    except Exception as exc:  # onnxruntime's own exception types vary by version
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UsageError(
            f"{path} is not an ONNX model onnxruntime can run: {first[:200]}"
        ) from None


def _numbers(text: str | None, count: int) -> tuple[float, ...] | None:
    if not text:
        return None
    try:
        values = tuple(float(v) for v in text.replace(" ", "").strip("[]()").split(","))
    except ValueError:
        return None
    if not all(math.isfinite(v) for v in values):  # nan, inf: every vector would be NaN
        return None
    return values if len(values) == count else None


def parse_triple(text: str, what: str, *, positive: bool = False) -> tuple[float, float, float]:
    """``--mean 0.5,0.5,0.5`` → three finite floats (all > 0 with ``positive``, as a std
    must be: pixels are divided by it); one line otherwise."""
    values = _numbers(text, 3)
    if values is None or (positive and min(values) <= 0):
        kind = "positive numbers" if positive else "numbers"
        raise UsageError(f"{what} takes three comma-separated {kind} (R,G,B), not {text!r}")
    return (values[0], values[1], values[2])


def _run(session: Any, feed: dict[str, np.ndarray], path: Path) -> list[Any]:
    """One run of a model; a failure of the graph (a shape it refuses, an id beyond its
    vocabulary) is one line naming the model, not onnxruntime's traceback."""
    try:
        return list(session.run(None, feed))
    except Exception as exc:  # onnxruntime's own exception types vary by version
        text = str(exc).strip()
        first = text.splitlines()[0] if text else type(exc).__name__
        raise UsageError(f"{path.name} failed on its input: {first[:300]}") from None


def _static(value: object) -> int | None:
    return value if isinstance(value, int) and value > 0 else None


def _output(results: Sequence[Any]) -> np.ndarray:
    """The embedding among a model's outputs: the first of rank 2 (a rank-3 output, a text
    model's hidden states, is taken at its first position as a last resort)."""
    for result in results:
        array = np.asarray(result)
        if array.ndim == 2:
            return array.astype(np.float32)
    array = np.asarray(results[0])
    if array.ndim == 3:
        return array[:, 0, :].astype(np.float32)
    raise UsageError(f"the model's output has shape {array.shape}, not (batch, dims)")


def normalise(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (cosine is then a dot product); a zero row stays zero."""
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.where(norms == 0, 1, norms)


@dataclass(frozen=True)
class Preprocessing:
    """What an image's pixels go through before the model: kept with the model's vectors
    (FORMAT §7.4), so every later run and query prepares images the same way."""

    size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    def describe(self) -> str:
        def triple(values: tuple[float, float, float]) -> str:
            return ",".join(f"{v:g}" for v in values)

        return f"--image-size {self.size} --mean {triple(self.mean)} --std {triple(self.std)}"


@dataclass
class ImageModel:
    """An image tower: pixels (``N×3×size×size``, normalised) in, one vector per image out."""

    path: Path
    digest: str
    session: Any
    input_name: str
    input_type: Any  # numpy dtype of the input (float32 or float16)
    size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    batch: int  # images per run: the graph's, when it fixes one
    fixed: bool  # the graph fixes the batch: a short last batch is padded to it

    @property
    def preprocessing(self) -> Preprocessing:
        return Preprocessing(self.size, self.mean, self.std)

    @classmethod
    def load(
        cls,
        path: Path,
        *,
        image_size: int | None = None,
        mean: tuple[float, float, float] | None = None,
        std: tuple[float, float, float] | None = None,
        digest: str | None = None,
    ) -> ImageModel:
        session = _session(path)
        images = [i for i in session.get_inputs() if len(i.shape) == 4]
        if len(images) != 1 or len(session.get_inputs()) != 1:
            raise UsageError(f"{path} is not an image model (one N×3×H×W input expected)")
        spec = images[0]
        height, width = _static(spec.shape[2]), _static(spec.shape[3])
        if height is not None and width is not None and height != width:
            raise UsageError(f"{path} takes {height}×{width} images; only square inputs are read")
        meta = session.get_modelmeta().custom_metadata_map or {}
        found = _numbers(meta.get("image_size"), 1)
        size = height or (int(found[0]) if found else None) or image_size or CLIP_SIZE
        got_mean = _numbers(meta.get("mean"), 3)
        got_std = _numbers(meta.get("std"), 3)
        if got_std is not None and min(got_std) <= 0:
            raise UsageError(f"{path}'s metadata gives std {meta.get('std')}: not all positive")
        return cls(
            path=path,
            digest=digest or model_digest(path),
            session=session,
            input_name=spec.name,
            input_type=np.float16 if spec.type == "tensor(float16)" else np.float32,
            size=size,
            mean=(got_mean or mean or CLIP_MEAN),  # type: ignore[arg-type]
            std=(got_std or std or CLIP_STD),  # type: ignore[arg-type]
            batch=_static(spec.shape[0]) or BATCH,
            fixed=_static(spec.shape[0]) is not None,
        )

    def pixels(self, data: bytes) -> np.ndarray | None:
        """One image's input (3×size×size float32): the shorter side resized to ``size``
        (bicubic), the centre cropped, scaled to 0–1 and normalised; None when Pillow cannot
        read it (a video, a damaged file)."""
        try:
            with Image.open(io.BytesIO(data)) as source:
                source.draft("RGB", (self.size, self.size))  # a JPEG decodes at a reduced scale
                image: Image.Image = ImageOps.exif_transpose(source).convert("RGB")
        except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError):
            return None
        width, height = image.size
        scale = self.size / min(width, height)
        resized = image.resize(
            (max(self.size, round(width * scale)), max(self.size, round(height * scale))),
            Image.Resampling.BICUBIC,
            reducing_gap=2.0,  # a box reduction first: 1024 → 224 px in 3.8 ms, not 10.5
        )
        left = (resized.width - self.size) // 2
        top = (resized.height - self.size) // 2
        crop = resized.crop((left, top, left + self.size, top + self.size))
        scaled = np.asarray(crop, dtype=np.float32) / np.float32(255.0)
        mean, std = np.asarray(self.mean, np.float32), np.asarray(self.std, np.float32)
        normalised: np.ndarray = (scaled - mean) / std
        return normalised.transpose(2, 0, 1)

    def embed(self, pixels: list[np.ndarray]) -> np.ndarray:
        """Unit vectors (float32, ``len(pixels)×dims``) of preprocessed images."""
        out = []
        for start in range(0, len(pixels), self.batch):
            part = pixels[start : start + self.batch]
            feed = np.stack(part).astype(self.input_type)
            if self.fixed and len(part) < self.batch:  # the graph takes its batch or nothing
                padding = np.zeros((self.batch - len(part), *feed.shape[1:]), feed.dtype)
                feed = np.concatenate([feed, padding])
            result = _output(_run(self.session, {self.input_name: feed}, self.path))
            out.append(result[: len(part)])
        return normalise(np.concatenate(out))


@dataclass
class TextModel:
    """A text tower and its tokenizer (a ``tokenizer.json``): a query in, one vector out."""

    path: Path
    session: Any
    tokenizer: Any
    ids_name: str
    ids_type: Any
    mask_name: str | None
    length: int
    pad: int

    @classmethod
    def load(cls, path: Path, tokenizer: Path | None) -> TextModel:
        session = _session(path)
        inputs = session.get_inputs()
        ids = [i for i in inputs if i.type in ("tensor(int64)", "tensor(int32)")]
        if not ids or len(ids[0].shape) != 2:
            raise UsageError(f"{path} is not a text model (an N×L token-id input expected)")
        spec = next((i for i in ids if "mask" not in i.name), ids[0])
        mask = next((i.name for i in ids if "mask" in i.name), None)
        if len(inputs) > 1 + (mask is not None):
            raise UsageError(f"{path} takes inputs other than token ids and a mask")
        if tokenizer is None:
            candidate = path.parent / "tokenizer.json"
            if not candidate.is_file():
                raise UsageError(
                    f"a text model needs its tokenizer.json (--tokenizer; none beside {path})"
                )
            tokenizer = candidate
        try:
            from tokenizers import Tokenizer
        except ImportError:
            raise UsageError(f"a text model needs tokenizers: {EXTRA}") from None
        try:
            loaded = Tokenizer.from_file(os.fspath(tokenizer))
        except Exception as exc:  # tokenizers raises its own Exception subclass
            raise UsageError(f"{tokenizer} is not a tokenizer.json: {str(exc)[:200]}") from None
        padding = loaded.padding or {}
        return cls(
            path=path,
            session=session,
            tokenizer=loaded,
            ids_name=spec.name,
            ids_type=np.int32 if spec.type == "tensor(int32)" else np.int64,
            mask_name=mask,
            length=_static(spec.shape[1]) or CLIP_CONTEXT,
            pad=int(padding.get("pad_id", 0)),
        )

    def embed(self, text: str) -> np.ndarray:
        """The unit vector (float32, ``dims``) of ``text``."""
        tokens = list(self.tokenizer.encode(text).ids)[: self.length]
        if not tokens:
            raise UsageError("the query has no token the model knows")
        ids = np.full((1, self.length), self.pad, dtype=self.ids_type)
        ids[0, : len(tokens)] = tokens
        feed = {self.ids_name: ids}
        if self.mask_name is not None:
            mask = np.zeros((1, self.length), dtype=self.ids_type)
            mask[0, : len(tokens)] = 1
            feed[self.mask_name] = mask
        return normalise(_output(_run(self.session, feed, self.path)))[0]

    def check(self) -> None:
        """Refuse a tokenizer whose ids go beyond the model's vocabulary (a text model and
        another model's tokenizer): the model is run once on the tokenizer's largest id."""
        largest = int(self.tokenizer.get_vocab_size(with_added_tokens=True)) - 1
        ids = np.full((1, self.length), self.pad, dtype=self.ids_type)
        ids[0, 0] = largest
        feed = {self.ids_name: ids}
        if self.mask_name is not None:
            mask = np.zeros((1, self.length), dtype=self.ids_type)
            mask[0, 0] = 1
            feed[self.mask_name] = mask
        try:
            self.session.run(None, feed)
        except Exception:  # onnxruntime's own exception types vary by version
            raise UsageError(
                f"{self.path.name} fails on the tokenizer's token ids (up to {largest}): "
                "the tokenizer is not this text model's"
            ) from None
