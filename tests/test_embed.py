"""Optional embeddings: `mjvault embed` with ONNX graphs the test builds itself (onnx.helper)
and a WordLevel tokenizer.json, `search --semantic`, an image its own nearest, resume after
kill -9, forget, an encrypted vault's vectors sealed, and one line for a bad model."""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from mjvault import Vault
from mjvault.config.schema import EmbedSection
from mjvault.errors import UsageError
from mjvault.integrity.forget import forget_jobs
from mjvault.similarity import embeddings
from mjvault.similarity.embeddings import CACHE_FILE, EmbeddingStore, embed_images, head_images
from mjvault.similarity.onnx_models import ImageModel, Preprocessing, TextModel
from mjvault.similarity.semantic import semantic_search, semantic_similar
from tests.config_helpers import isolate, run_cli
from tests.conftest import CHEAP_KDF, PASSPHRASE

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
pytest.importorskip("tokenizers")

DIMS = 8
SIZE = 32  # the image graph's static input size (read from the graph, not an option)
WORDS = ["[PAD]", "[UNK]", "red", "green", "blue", "dark", "light"]
JOBS = 10
PLANTED = 6  # job whose second image is pure red


def job_id(n: int) -> str:
    return f"{n:08x}-1111-4222-8333-444444444444"


def image_model(path: Path) -> Path:
    """pixels N×3×32×32 → mean over H, W (N×3) → MatMul into 8 dims (R, G, B on axes 0–2).
    Its metadata says mean 0 and std 1: pixels in 0–1, so a pure red image is axis 0."""
    from onnx import TensorProto, helper, numpy_helper

    weight = np.zeros((3, DIMS), np.float32)
    weight[0, 0] = weight[1, 1] = weight[2, 2] = 1.0
    weight[:, 3] = 0.05  # a little of everything elsewhere: no row is exactly an axis
    graph = helper.make_graph(
        [
            helper.make_node("ReduceMean", ["pixels"], ["mean"], axes=[2, 3], keepdims=0),
            helper.make_node("MatMul", ["mean", "w"], ["image_embeds"]),
        ],
        "tiny-image",
        [helper.make_tensor_value_info("pixels", TensorProto.FLOAT, ["N", 3, SIZE, SIZE])],
        [helper.make_tensor_value_info("image_embeds", TensorProto.FLOAT, ["N", DIMS])],
        [numpy_helper.from_array(weight, "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    helper.set_model_props(model, {"mean": "0,0,0", "std": "1,1,1"})
    onnx.save(model, path)
    return path


def text_model(path: Path) -> Path:
    """ids N×6 → Gather from a word table (8 dims; [PAD] is zero) → mean over tokens."""
    from onnx import TensorProto, helper, numpy_helper

    table = np.zeros((len(WORDS), DIMS), np.float32)
    table[WORDS.index("red"), 0] = 1.0
    table[WORDS.index("green"), 1] = 1.0
    table[WORDS.index("blue"), 2] = 1.0
    table[WORDS.index("dark"), 4] = 1.0
    table[WORDS.index("light"), 3] = 1.0
    graph = helper.make_graph(
        [
            helper.make_node("Gather", ["table", "input_ids"], ["tokens"]),
            helper.make_node("ReduceMean", ["tokens"], ["text_embeds"], axes=[1], keepdims=0),
        ],
        "tiny-text",
        [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["N", 6])],
        [helper.make_tensor_value_info("text_embeds", TensorProto.FLOAT, ["N", DIMS])],
        [numpy_helper.from_array(table, "table")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, path)
    return path


def open_model(path: Path) -> Path:
    """As image_model, but the graph leaves H and W open and carries no metadata: the input
    size, mean and std come from the options alone."""
    from onnx import TensorProto, helper, numpy_helper

    weight = np.eye(3, DIMS, dtype=np.float32)
    weight[:, 3] = 0.05
    graph = helper.make_graph(
        [
            helper.make_node("ReduceMean", ["pixels"], ["mean"], axes=[2, 3], keepdims=0),
            helper.make_node("MatMul", ["mean", "w"], ["image_embeds"]),
        ],
        "tiny-open",
        [helper.make_tensor_value_info("pixels", TensorProto.FLOAT, ["N", 3, "H", "W"])],
        [helper.make_tensor_value_info("image_embeds", TensorProto.FLOAT, ["N", DIMS])],
        [numpy_helper.from_array(weight, "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, path)
    return path


def tokenizer(path: Path) -> Path:
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from tokenizers.pre_tokenizers import Whitespace

    made = Tokenizer(WordLevel({w: i for i, w in enumerate(WORDS)}, unk_token="[UNK]"))
    made.pre_tokenizer = Whitespace()  # type: ignore[assignment]
    made.save(str(path))
    return path


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("models")
    image_model(root / "image.onnx")
    text_model(root / "text.onnx")
    tokenizer(root / "tokenizer.json")
    return root


def png(colour: tuple[int, int, int], noise: int = 0) -> bytes:
    rng = np.random.default_rng(sum(colour) + noise)
    array = np.clip(
        np.asarray(colour, np.int16) + rng.integers(-noise, noise + 1, (64, 96, 3)), 0, 255
    ).astype(np.uint8)
    out = io.BytesIO()
    Image.fromarray(array).save(out, "PNG")
    return out.getvalue()


def fill(vault: Vault) -> None:
    """JOBS jobs of two images each in muted colours, one pure red image (PLANTED:1), and a
    job whose one "image" is no image at all."""
    rng = np.random.default_rng(3)
    with vault.writer("test") as writer:
        for n in range(JOBS):
            images = []
            for i in range(2):
                if (n, i) == (PLANTED, 1):
                    colour = (250, 5, 5)
                else:
                    colour = tuple(int(c) for c in rng.integers(60, 200, 3))
                images.append(writer.put_media(png(colour, noise=8)))  # type: ignore[arg-type]
            record = {"id": job_id(n), "prompt": f"job {n}", "type": "grid"}
            record["enqueue_time"] = f"2024-01-{n + 1:02d} 10:00:00.000000"
            writer.add_job(json.dumps(record).encode(), images)
        junk = writer.put_media(b"\x00\x00\x00\x18ftypmp42" + bytes(64))
        record = {"id": job_id(99), "prompt": "a video", "type": "video"}
        record["enqueue_time"] = "2024-02-01 10:00:00.000000"
        writer.add_job(json.dumps(record).encode(), [junk])


def embed_settings(models: Path) -> EmbedSection:
    return EmbedSection(
        model=models / "image.onnx",
        text_model=models / "text.onnx",
        tokenizer=models / "tokenizer.json",
    )


def test_the_graph_says_the_size_and_the_metadata_the_normalisation(models: Path) -> None:
    model = ImageModel.load(models / "image.onnx", image_size=100, mean=(0.5, 0.5, 0.5))
    assert model.size == SIZE and model.mean == (0.0, 0.0, 0.0) and model.std == (1, 1, 1)
    assert model.input_name == "pixels" and model.batch > 1
    pixels = model.pixels(png((255, 0, 0)))
    assert pixels is not None and pixels.shape == (3, SIZE, SIZE)
    vector = model.embed([pixels])[0]
    assert abs(float(np.linalg.norm(vector)) - 1) < 1e-5 and vector.argmax() == 0
    assert model.pixels(b"not an image") is None
    text = TextModel.load(models / "text.onnx", None)  # tokenizer.json beside it
    assert text.length == 6 and text.embed("green").argmax() == 1


def test_embed_and_search_by_meaning(
    tmp_path: Path,
    models: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    isolate(monkeypatch, tmp_path)
    vault = Vault.init(tmp_path / "vault")
    fill(vault)
    vault.close()
    at = ("--vault", str(tmp_path / "vault"))
    done = run_cli(
        capsys,
        *at,
        "embed",
        "--model",
        str(models / "image.onnx"),
        "--text-model",
        str(models / "text.onnx"),
        "--json",
    )
    assert done.code == 0, done.err
    report = done.json()
    assert report["embedded"] == JOBS * 2 and report["not_images"] == 1
    assert report["dims"] == DIMS
    # Remembered: a second run names no model and computes nothing.
    again = run_cli(capsys, *at, "--json", "embed")
    assert again.code == 0, again.err
    assert again.json()["embedded"] == 0 and again.json()["cached"] == JOBS * 2 + 1

    found = run_cli(capsys, *at, "search", "--semantic", "red", "--json")
    assert found.code == 0, found.err
    jobs = found.json()["jobs"]
    assert jobs[0]["id"] == job_id(PLANTED) and jobs[0]["image"] == 1
    assert jobs[0]["score"] > 0.95 and len({j["id"] for j in jobs}) == len(jobs)
    table = run_cli(capsys, *at, "search", "--semantic", "red", "-n", "3")
    assert table.code == 0 and table.out.splitlines()[0].startswith(job_id(PLANTED)[:8])
    assert len(table.out.splitlines()) == 3
    ids = run_cli(capsys, *at, "search", "--semantic", "red", "--ids", "-n", "1")
    assert ids.out.split() == [job_id(PLANTED)]
    mixed = run_cli(capsys, *at, "search", "--semantic", "red", "fox")
    assert mixed.code != 0 and len(mixed.err.strip().splitlines()) == 1
    near = run_cli(capsys, *at, "similar", f"{job_id(PLANTED)}:1", "--semantic", "--json")
    assert near.code == 0, near.err
    first = near.json()["images"][0]
    assert (first["job_id"], first["index"]) == (job_id(PLANTED), 1) and first["score"] > 0.999
    lines = run_cli(capsys, *at, "similar", job_id(PLANTED), "--semantic", "-n", "2").out
    assert len(lines.splitlines()) == 2 and lines.split()[1] == job_id(PLANTED)

    vault = Vault.open(tmp_path / "vault")
    # Every image is its own nearest, by its stored vector.
    for n in (0, PLANTED, JOBS - 1):
        for i in (0, 1):
            hits = semantic_similar(vault, f"{job_id(n)}:{i}", 3)
            assert (hits[0].job_id, hits[0].index) == (job_id(n), i)
            assert hits[0].score > 0.999
    # And an image file outside the vault finds its copy inside.
    red = tmp_path / "red.png"
    red.write_bytes(png((255, 0, 0)))
    assert semantic_similar(vault, str(red), 1)[0].job_id == job_id(PLANTED)
    # An index rebuild leaves the vectors (they are not the index's).
    vault.rebuild_index()
    assert semantic_search(vault, "red", 1)[0].job_id == job_id(PLANTED)
    vault.close()


def test_no_text_model_is_one_line(
    tmp_path: Path,
    models: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    isolate(monkeypatch, tmp_path)
    vault = Vault.init(tmp_path / "vault")
    fill(vault)
    vault.close()
    at = ("--vault", str(tmp_path / "vault"))
    before = run_cli(capsys, *at, "search", "--semantic", "red")
    assert before.code != 0 and "text model" in before.err
    assert len(before.err.strip().splitlines()) <= 2  # the line and its hint
    done = run_cli(capsys, *at, "embed", "--model", str(models / "image.onnx"))
    assert done.code == 0, done.err
    after = run_cli(capsys, *at, "search", "--semantic", "red")
    assert after.code != 0 and "needs a text model" in after.err


@pytest.mark.parametrize(
    "content", [b"", b"this is not a model", bytes(range(256)) * 40], ids=["empty", "text", "noise"]
)
def test_a_bad_model_file_is_one_line(
    tmp_path: Path,
    content: bytes,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    isolate(monkeypatch, tmp_path)
    Vault.init(tmp_path / "vault").close()
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(content)
    done = run_cli(capsys, "--vault", str(tmp_path / "vault"), "embed", "--model", str(bad))
    assert done.code != 0
    assert len(done.err.strip().splitlines()) == 1 and "bad.onnx" in done.err
    assert "Traceback" not in done.err
    missing = run_cli(capsys, "--vault", str(tmp_path / "vault"), "embed", "--model", "nope.onnx")
    assert missing.code != 0 and len(missing.err.strip().splitlines()) == 1


def test_a_missing_runtime_names_the_extra(models: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import fails as if absent
    with pytest.raises(Exception, match=r"mjvault\[embed\]") as raised:
        ImageModel.load(models / "image.onnx")
    assert "\n" not in str(raised.value)


def test_forget_removes_the_vectors(vault: Vault, models: Path) -> None:
    fill(vault)
    model = ImageModel.load(models / "image.onnx")
    embed_images(vault, model, workers=1)
    entry = vault.entry(job_id(PLANTED))
    forget_jobs(vault, [job_id(PLANTED)], reason="test")
    with EmbeddingStore.open(vault) as store:
        assert store.count(model.digest) == (JOBS - 1) * 2
        for image in entry.images:
            assert image is not None and store.vector_of(model.digest, image) is None
        kept = {i for block in store.blocks(model.digest) for i in block.images()}
    assert kept == {i for i in head_images(vault) if i != entry.images[0]} - {
        vault.entry(job_id(99)).images[0]
    }
    hits = semantic_search(vault, "red", 3, settings=embed_settings(models))
    assert job_id(PLANTED) not in {h.job_id for h in hits}


def test_an_encrypted_vaults_vectors_are_sealed(tmp_path: Path, models: Path) -> None:
    vault = Vault.init(tmp_path / "vault", encrypt=True, passphrase=PASSPHRASE, kdf=CHEAP_KDF)
    fill(vault)
    model = ImageModel.load(models / "image.onnx")
    report = embed_images(vault, model, workers=1)
    assert report.embedded == JOBS * 2
    hits = semantic_search(vault, "red", 2, settings=embed_settings(models))
    assert hits[0].job_id == job_id(PLANTED)
    vectors = []
    with EmbeddingStore.open(vault) as store:
        for block in store.blocks(model.digest):
            vectors.extend(block.vectors)
    vault.close()
    # No stored vector, as float16 or float32, lies in the clear anywhere under the vault.
    needles = [v.astype("<f2").tobytes()[:8] for v in vectors]
    needles += [v.astype("<f4").tobytes()[:12] for v in vectors]
    for folder, _, files in os.walk(tmp_path / "vault"):
        for name in files:
            data = Path(folder, name).read_bytes()
            for needle in needles:
                assert needle not in data, Path(folder, name)
    with sqlite3.connect(tmp_path / "vault" / CACHE_FILE) as db:
        sealed = db.execute("SELECT ids, vectors FROM blocks").fetchall()
    # nonce, float16 rows, tag: sealed, and nothing else beside them
    assert sealed and all(len(v) == 12 + len(i) // 32 * DIMS * 2 + 16 for i, v in sealed)
    # Opened without the keys (a different passphrase cannot open the vault at all): a
    # store read by a vault with other keys says so in one line and drops nothing.
    other = Vault.init(tmp_path / "other", encrypt=True, passphrase=PASSPHRASE, kdf=CHEAP_KDF)
    other.close()
    (tmp_path / "other" / "cache").mkdir(exist_ok=True)
    (tmp_path / "other" / CACHE_FILE).write_bytes((tmp_path / "vault" / CACHE_FILE).read_bytes())
    other = Vault.open(tmp_path / "other", passphrase=PASSPHRASE)
    with pytest.raises(Exception, match="keys"):
        EmbeddingStore.open(other)
    # A writer under the other keys starts afresh rather than mixing keys.
    with EmbeddingStore.open(other, writable=True) as store:
        assert store.count(model.digest) == 0
    other.close()


def test_embed_resumes_after_kill_9(tmp_path: Path, models: Path) -> None:
    vault = Vault.init(tmp_path / "vault")
    fill(vault)
    total = len(set(head_images(vault)))
    vault.close()
    # The child stores a block of two vectors at a time, slowly: killed partway, what it
    # stored is kept and the next run computes the rest, none twice.
    script = (
        "import sys, time\n"
        "import mjvault.similarity.embeddings as e\n"
        "from mjvault.similarity.onnx_models import ImageModel\n"
        "from mjvault import Vault\n"
        "e.BLOCK = 2\n"
        "m = ImageModel.load(__import__('pathlib').Path(sys.argv[2]))\n"
        "m.batch = 1\n"
        "run = m.embed\n"
        "m.embed = lambda p: (time.sleep(0.05), run(p))[1]  # a kill finds it busy\n"
        "e.embed_images(Vault.open(sys.argv[1]), m, workers=1)\n"
        "print('finished', flush=True)\n"
    )
    child = subprocess.Popen(
        [sys.executable, "-c", script, str(tmp_path / "vault"), str(models / "image.onnx")],
        stdout=subprocess.PIPE,
        text=True,
    )
    cache = tmp_path / "vault" / CACHE_FILE
    deadline = time.monotonic() + 60
    stored = 0
    while time.monotonic() < deadline:
        if cache.exists():
            try:
                with sqlite3.connect(f"{cache.as_uri()}?mode=ro", uri=True) as db:
                    stored = db.execute("SELECT count(*) FROM images").fetchone()[0]
            except sqlite3.Error:
                stored = 0
        if stored >= 4:
            break
        time.sleep(0.02)
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    vault = Vault.open(tmp_path / "vault")
    model = ImageModel.load(models / "image.onnx")
    with EmbeddingStore.open(vault) as store:
        kept = store.count(model.digest)
    assert 0 < kept < total - 1, "the kill came too late to test a resume"
    report = embed_images(vault, model, workers=1)
    assert report.embedded == total - 1 - kept and report.cached == kept
    with EmbeddingStore.open(vault) as store:
        rows = [i for block in store.blocks(model.digest) for i in block.images()]
    assert len(rows) == len(set(rows)) == total - 1
    vault.close()


def test_vectors_stream_a_block_at_a_time(vault: Vault, models: Path) -> None:
    fill(vault)
    model = ImageModel.load(models / "image.onnx")
    original = embeddings.BLOCK
    try:
        embeddings.BLOCK = 3
        embed_images(vault, model, workers=2)
    finally:
        embeddings.BLOCK = original
    with EmbeddingStore.open(vault) as store:
        sizes = [len(block) for block in store.blocks(model.digest)]
    # Full blocks but the last: a search reads few rows however the run was cut.
    assert sizes[:-1] == [3] * (len(sizes) - 1) and 0 < sizes[-1] <= 3
    assert sum(sizes) == JOBS * 2


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    rows=st.integers(1, 40),
    dims=st.integers(1, 24),
    block=st.integers(1, 9),
    gone=st.sets(st.integers(0, 39), max_size=12),
    encrypt=st.booleans(),
    seed=st.integers(0, 2**32 - 1),
)
def test_the_store_reads_back_what_it_wrote_and_forgets_exactly(
    rows: int, dims: int, block: int, gone: set[int], encrypt: bool, seed: int
) -> None:
    """Whatever the vectors, dims and block size: each image's vector reads back as its
    float16 rounding, every image once, and a removal drops exactly the images named."""
    rng = np.random.default_rng(seed)
    vectors = rng.standard_normal((rows, dims)).astype(np.float32)
    ids = [rng.bytes(32).hex() for _ in range(rows)]
    with tempfile.TemporaryDirectory(prefix="pt-embed-") as root:
        vault = (
            Vault.init(Path(root, "v"), encrypt=True, passphrase=PASSPHRASE, kdf=CHEAP_KDF)
            if encrypt
            else Vault.init(Path(root, "v"))
        )
        model = "a" * 64
        with EmbeddingStore.open(vault, writable=True) as store:
            store.note_model(model, dims, "/m.onnx", 1, 1, Preprocessing(8, (0, 0, 0), (1, 1, 1)))
            for start in range(0, rows, block):
                store.add_block(model, ids[start : start + block], vectors[start : start + block])
            store.remove(ids[i] for i in gone if i < rows)
        kept = [i for i in range(rows) if i not in gone]
        with EmbeddingStore.open(vault) as store:
            read = {
                i: v
                for b in store.blocks(model)
                for i, v in zip(b.images(), b.vectors, strict=True)
            }
            assert sorted(read) == sorted(ids[i] for i in kept)
            assert store.count(model) == len(kept)
            for i in kept:
                expected = vectors[i].astype("<f2")
                assert np.array_equal(read[ids[i]], expected)
                assert np.array_equal(store.vector_of(model, ids[i]), expected.astype(np.float32))
        vault.close()


def test_a_job_forgotten_mid_run_keeps_no_vector(vault: Vault, models: Path) -> None:
    """The run holds the write lock only to store a block: a forget can run meanwhile (as a
    sync can), and the images it forgot are left out of the next block."""
    fill(vault)
    model = ImageModel.load(models / "image.onnx")
    planted = vault.entry(job_id(PLANTED)).images
    run = model.embed
    forgot: list[list[str]] = []

    def forgetting(pixels: list[np.ndarray]) -> np.ndarray:
        if not forgot:  # the first batch's images are read; the forget takes the lock
            forgot.append(forget_jobs(vault, [job_id(PLANTED)], reason="test").added)
        return run(pixels)

    model.embed = forgetting  # type: ignore[method-assign]
    report = embed_images(vault, model, workers=1)
    assert forgot == [[job_id(PLANTED)]]
    assert report.embedded == (JOBS - 1) * 2
    with EmbeddingStore.open(vault) as store:
        assert store.count(model.digest) == (JOBS - 1) * 2
        for image in planted:
            assert image is not None and store.vector_of(model.digest, image) is None


def test_a_key_rotation_seals_the_vectors_again(tmp_path: Path, models: Path) -> None:
    from mjvault.integrity.rotate import rotate

    root = tmp_path / "vault"
    vault = Vault.init(root, encrypt=True, passphrase=PASSPHRASE, kdf=CHEAP_KDF)
    fill(vault)
    model = ImageModel.load(models / "image.onnx")
    embed_images(vault, model, workers=1)
    vault.close()
    with sqlite3.connect(root / CACHE_FILE) as db:
        before = dict(db.execute("SELECT block, vectors FROM blocks"))
    rotate(root, PASSPHRASE, kdf=CHEAP_KDF)
    with sqlite3.connect(root / CACHE_FILE) as db:
        after = dict(db.execute("SELECT block, vectors FROM blocks"))
    # Every block sealed again (new nonces), none dropped, and they open under the new keys.
    assert sorted(after) == sorted(before) and all(after[b] != before[b] for b in before)
    vault = Vault.open(root, passphrase=PASSPHRASE)
    with EmbeddingStore.open(vault) as store:
        assert store.count(model.digest) == JOBS * 2
    assert semantic_search(vault, "red", 1, settings=embed_settings(models))[0].job_id == (
        job_id(PLANTED)
    )
    report = embed_images(vault, model, workers=1)
    assert report.embedded == 0 and report.cached == JOBS * 2 + 1
    vault.close()


def add_job(vault: Vault, n: int, colour: tuple[int, int, int]) -> str:
    with vault.writer("test") as writer:
        image = writer.put_media(png(colour))
        record = {"id": job_id(n), "prompt": f"job {n}", "type": "grid"}
        record["enqueue_time"] = f"2024-03-{n % 28 + 1:02d} 10:00:00.000000"
        writer.add_job(json.dumps(record).encode(), [image])
    return image


def test_the_preprocessing_is_kept_with_the_vectors(
    tmp_path: Path,
    models: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """--image-size, --mean and --std hold for the model's later runs and queries, and a run
    with other values is refused: vectors of two preprocessings are never mixed."""
    isolate(monkeypatch, tmp_path)
    model = open_model(tmp_path / "open.onnx")
    vault = Vault.init(tmp_path / "vault")
    fill(vault)
    vault.close()
    at = ("--vault", str(tmp_path / "vault"))
    options = ("--image-size", "16", "--mean", "0.1,0.2,0.3", "--std", "0.5,0.25,2")
    first = run_cli(capsys, *at, "embed", "--model", str(model), *options)
    assert first.code == 0, first.err
    vault = Vault.open(tmp_path / "vault")
    green = add_job(vault, 60, (10, 240, 30))
    vault.close()
    later = run_cli(capsys, *at, "--json", "embed")  # after a sync: no options given
    assert later.code == 0, later.err
    assert later.json()["embedded"] == 1
    vault = Vault.open(tmp_path / "vault")
    kept = ImageModel.load(model, image_size=16, mean=(0.1, 0.2, 0.3), std=(0.5, 0.25, 2))
    pixels = kept.pixels(png((10, 240, 30)))
    assert pixels is not None
    with EmbeddingStore.open(vault) as store:
        assert store.preprocessing(kept.digest) == kept.preprocessing
        stored = store.vector_of(kept.digest, green)
    assert stored is not None
    assert float(stored @ kept.embed([pixels])[0]) > 0.9999
    # A file is prepared as the stored vectors were: the planted red image is its nearest.
    red = tmp_path / "red.png"
    red.write_bytes(png((250, 5, 5), noise=8))
    hit = semantic_similar(vault, str(red), 1, settings=EmbedSection(model=model))[0]
    assert hit.job_id == job_id(PLANTED) and hit.score > 0.999
    vault.close()
    other = run_cli(capsys, *at, "embed", "--mean", "0.5,0.5,0.5")
    assert other.code != 0 and len(other.err.strip().splitlines()) == 1
    assert "--mean" in other.err


def test_two_runs_at_once_store_each_image_once(vault: Vault, models: Path) -> None:
    """A second run that stores everything while the first is computing its first batch:
    the first, under the lock, stores only what the second did not, so each image keeps one
    vector, a search finds no duplicate, and a forget leaves no vector behind."""
    fill(vault)
    first = ImageModel.load(models / "image.onnx")
    second = ImageModel.load(models / "image.onnx")
    run = first.embed
    other: list[embeddings.EmbedReport] = []

    def racing(pixels: list[np.ndarray]) -> np.ndarray:
        if not other:
            other.append(embed_images(vault, second, workers=1))
        return run(pixels)

    first.embed = racing  # type: ignore[method-assign]
    report = embed_images(vault, first, workers=1)
    assert other[0].embedded == JOBS * 2 and report.embedded == 0
    with EmbeddingStore.open(vault) as store:
        rows = [i for block in store.blocks(first.digest) for i in block.images()]
    assert len(rows) == len(set(rows)) == JOBS * 2
    hits = semantic_similar(vault, f"{job_id(PLANTED)}:1", 3, settings=embed_settings(models))
    assert len({(h.job_id, h.index) for h in hits}) == 3 and hits[0].score < 1.0001
    forget_jobs(vault, [job_id(PLANTED)], reason="test")
    with EmbeddingStore.open(vault) as store:
        left = [i for block in store.blocks(first.digest) for i in block.images()]
        assert len(left) == store.count(first.digest) == (JOBS - 1) * 2


def fixed_batch_model(path: Path, batch: int) -> Path:
    """As image_model, but the graph fixes the batch: it takes exactly ``batch`` images."""
    from onnx import TensorProto, helper, numpy_helper

    weight = np.eye(3, DIMS, dtype=np.float32)
    weight[:, 3] = 0.05
    graph = helper.make_graph(
        [
            helper.make_node("ReduceMean", ["pixels"], ["mean"], axes=[2, 3], keepdims=0),
            helper.make_node("MatMul", ["mean", "w"], ["image_embeds"]),
        ],
        "tiny-fixed",
        [helper.make_tensor_value_info("pixels", TensorProto.FLOAT, [batch, 3, SIZE, SIZE])],
        [helper.make_tensor_value_info("image_embeds", TensorProto.FLOAT, [batch, DIMS])],
        [numpy_helper.from_array(weight, "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    helper.set_model_props(model, {"mean": "0,0,0", "std": "1,1,1"})
    onnx.save(model, path)
    return path


def test_a_graph_with_a_fixed_batch_is_fed_that_batch(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    isolate(monkeypatch, tmp_path)
    model = fixed_batch_model(tmp_path / "two.onnx", 2)
    vault = Vault.init(tmp_path / "vault")
    fill(vault)
    add_job(vault, 61, (20, 20, 240))  # 21 images: the last batch is short and padded
    vault.close()
    done = run_cli(
        capsys, "--vault", str(tmp_path / "vault"), "--json", "embed", "--model", str(model)
    )
    assert done.code == 0, done.err
    assert done.json()["embedded"] == JOBS * 2 + 1
    vault = Vault.open(tmp_path / "vault")
    settings = EmbedSection(model=model)
    for n, i in ((0, 0), (PLANTED, 1), (61, 0)):
        hit = semantic_similar(vault, f"{job_id(n)}:{i}", 1, settings=settings)[0]
        assert (hit.job_id, hit.index) == (job_id(n), i) and hit.score > 0.999
    vault.close()


def test_a_tokenizer_not_the_text_models_is_one_line(
    tmp_path: Path,
    models: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from tokenizers.pre_tokenizers import Whitespace

    isolate(monkeypatch, tmp_path)
    words = WORDS + [f"w{n}" for n in range(20)] + ["zebra"]
    big = Tokenizer(WordLevel({w: i for i, w in enumerate(words)}, unk_token="[UNK]"))
    big.pre_tokenizer = Whitespace()  # type: ignore[assignment]
    big.save(str(tmp_path / "big.json"))
    vault = Vault.init(tmp_path / "vault")
    fill(vault)
    vault.close()
    at = ("--vault", str(tmp_path / "vault"))
    image = str(models / "image.onnx")
    config = tmp_path / "vault" / "config.toml"
    done = run_cli(
        capsys, *at, "embed", "--model", image, "--text-model", str(models / "text.onnx")
    )
    assert done.code == 0, done.err
    # A tokenizer alone is checked against the remembered text model, and not remembered.
    alone = run_cli(capsys, *at, "embed", "--tokenizer", str(tmp_path / "big.json"))
    assert alone.code != 0 and len(alone.err.strip().splitlines()) == 1, alone.err
    assert "tokenizer" in alone.err and "Traceback" not in alone.err
    assert "big.json" not in config.read_text()
    # A new text model without a tokenizer forgets the old model's.
    other = tmp_path / "other"
    other.mkdir()
    text_model(other / "text.onnx")
    tokenizer(other / "tokenizer.json")
    named = run_cli(capsys, *at, "embed", "--tokenizer", str(models / "tokenizer.json"))
    assert named.code == 0, named.err
    assert "tokenizer =" in config.read_text()
    moved = run_cli(capsys, *at, "embed", "--text-model", str(other / "text.onnx"))
    assert moved.code == 0, moved.err
    assert "tokenizer =" not in config.read_text()
    # A mismatched pair that reached a search anyway fails there in one line.
    vault = Vault.open(tmp_path / "vault")
    settings = EmbedSection(
        model=models / "image.onnx",
        text_model=models / "text.onnx",
        tokenizer=tmp_path / "big.json",
    )
    with pytest.raises(UsageError) as raised:
        semantic_search(vault, "zebra", 3, settings=settings)
    assert "\n" not in str(raised.value) and "text.onnx" in str(raised.value)
    vault.close()


def test_no_nan_is_stored_or_scored(
    tmp_path: Path,
    models: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    isolate(monkeypatch, tmp_path)
    vault = Vault.init(tmp_path / "vault")
    fill(vault)
    vault.close()
    at = ("--vault", str(tmp_path / "vault"))
    model = open_model(tmp_path / "open.onnx")
    for option in (("--std", "0,0,0"), ("--std", "1,-1,1"), ("--mean", "nan,0,0")):
        refused = run_cli(capsys, *at, "embed", "--model", str(model), *option)
        assert refused.code != 0 and len(refused.err.strip().splitlines()) == 1, refused.err
        assert option[0] in refused.err
    assert not (tmp_path / "vault" / CACHE_FILE).exists()
    # A model whose output is NaN for some images (0/0 on a black image): refused, not stored.
    vault = Vault.open(tmp_path / "vault")
    add_job(vault, 62, (0, 0, 0))
    loaded = ImageModel.load(model, image_size=16, mean=(0, 0, 0), std=(1, 1, 1))
    run = loaded.embed

    def dividing(pixels: list[np.ndarray]) -> np.ndarray:
        out = run(pixels)
        out[[float(p.max()) == 0 for p in pixels]] = np.nan
        return out

    loaded.embed = dividing  # type: ignore[method-assign]
    with pytest.raises(UsageError, match="NaN"):
        embed_images(vault, loaded, workers=1)
    # A NaN stored by an earlier version ranks nowhere and never reaches the JSON.
    good = ImageModel.load(models / "image.onnx")
    embed_images(vault, good, workers=1)
    victim = vault.entry(job_id(3)).images[0]
    assert victim is not None
    with EmbeddingStore.open(vault, writable=True) as store:
        store.remove([victim])
        store.add_block(good.digest, [victim], np.full((1, DIMS), np.nan, np.float32))
    vault.close()
    (tmp_path / "vault" / "config.toml").write_text(f'[embed]\nmodel = "{models / "image.onnx"}"\n')
    near = run_cli(
        capsys, *at, "--json", "similar", f"{job_id(PLANTED)}:1", "--semantic", "-n", "30"
    )
    assert near.code == 0, near.err
    assert "NaN" not in near.out and "Infinity" not in near.out
    assert victim not in near.out and len(near.json()["images"]) == JOBS * 2


def test_gc_drops_the_vectors_of_the_images_it_removes(vault: Vault, models: Path) -> None:
    """A job a sync dropped from HEAD, its snapshots forgotten: gc removes its images, and
    their vectors with them (no vector outlives its image)."""
    from mjvault.integrity.forget import KeepPolicy, forget_snapshots
    from mjvault.integrity.gc import gc

    fill(vault)
    model = ImageModel.load(models / "image.onnx")
    embed_images(vault, model, workers=1)
    planted = [i for i in vault.entry(job_id(PLANTED)).images if i is not None]
    with vault.writer("test") as writer:
        writer.remove_job(job_id(PLANTED))
    forget_snapshots(vault, policy=KeepPolicy(last=1))
    dry = gc(vault, grace_seconds=0, dry_run=True)
    with EmbeddingStore.open(vault) as store:
        assert store.count(model.digest) == JOBS * 2  # a dry run removes nothing
    swept = gc(vault, grace_seconds=0)
    assert set(planted) <= set(swept.removed_ids) and dry.removed == swept.removed
    with EmbeddingStore.open(vault) as store:
        assert store.count(model.digest) == (JOBS - 1) * 2
        assert all(store.vector_of(model.digest, i) is None for i in planted)
        kept = [i for block in store.blocks(model.digest) for i in block.images()]
    assert not set(planted) & set(kept)


def test_a_later_run_fills_the_last_short_block(vault: Vault, models: Path) -> None:
    fill(vault)
    model = ImageModel.load(models / "image.onnx")
    original = embeddings.BLOCK
    try:
        embeddings.BLOCK = 3
        embed_images(vault, model, workers=1)  # 20 vectors: six blocks of 3 and one of 2
        for n in (70, 71):
            add_job(vault, n, (10 * n % 256, 90, 40))
        embed_images(vault, model, workers=1)
    finally:
        embeddings.BLOCK = original
    with EmbeddingStore.open(vault) as store:
        sizes = [len(block) for block in store.blocks(model.digest)]
        rows = [i for block in store.blocks(model.digest) for i in block.images()]
    assert sizes == [3] * 7 + [1] and len(set(rows)) == JOBS * 2 + 2


def test_emptying_a_foreign_store_waits_for_the_lock(
    tmp_path: Path, models: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A store sealed under other keys is emptied by the next run: a write, so only once the
    run holds the write lock."""
    import threading

    from mjvault.lock import WriteLock

    monkeypatch.setattr(embeddings, "PAUSE", 0.02)
    model = ImageModel.load(models / "image.onnx")
    first = Vault.init(tmp_path / "a", encrypt=True, passphrase=PASSPHRASE, kdf=CHEAP_KDF)
    fill(first)
    embed_images(first, model, workers=1)
    first.close()
    other = Vault.init(tmp_path / "b", encrypt=True, passphrase=PASSPHRASE, kdf=CHEAP_KDF)
    add_job(other, 80, (200, 30, 30))
    (tmp_path / "b" / "cache").mkdir(exist_ok=True)
    (tmp_path / "b" / CACHE_FILE).write_bytes((tmp_path / "a" / CACHE_FILE).read_bytes())

    def rows() -> int:
        with sqlite3.connect(f"{(tmp_path / 'b' / CACHE_FILE).as_uri()}?mode=ro", uri=True) as db:
            return int(db.execute("SELECT count(*) FROM images").fetchone()[0])

    before = rows()
    held = WriteLock(tmp_path / "b").acquire()
    done: list[embeddings.EmbedReport] = []
    runner = threading.Thread(target=lambda: done.append(embed_images(other, model, workers=1)))
    runner.start()
    try:
        time.sleep(0.3)
        assert rows() == before and not done  # waiting: nothing emptied under the holder
    finally:
        held.release()
    runner.join(30)
    assert done and done[0].embedded == 1 and rows() == 1
    other.close()


def test_vectors_are_sealed_with_the_text_key_and_older_stores_still_read(
    tmp_path: Path, models: Path
) -> None:
    """One owner for sealing: blocks and check under seal_bytes (the text key, as the
    perceptual hashes'), and the check row says so; a store an earlier version sealed under
    the index key is still read, and sealed again under the text key by the next writer."""
    from mjvault.similarity.embeddings import CHECK_CONTEXT, _vectors_context

    vault = Vault.init(tmp_path / "vault", encrypt=True, passphrase=PASSPHRASE, kdf=CHEAP_KDF)
    fill(vault)
    model = ImageModel.load(models / "image.onnx")
    embed_images(vault, model, workers=1)
    keys = vault.store.keys
    assert keys is not None
    cache = tmp_path / "vault" / CACHE_FILE
    with sqlite3.connect(cache) as db:
        meta = dict(db.execute("SELECT name, value FROM meta"))
        assert bytes(meta["key"]) == b"text"
        assert keys.open_bytes(bytes(meta["check"]), CHECK_CONTEXT) == b""
        blocks = db.execute("SELECT model, block, ids, vectors FROM blocks").fetchall()
        plain = {}
        for digest, number, ids, data in blocks:
            context = _vectors_context(digest, number, bytes(ids))
            plain[number] = keys.open_bytes(bytes(data), context)
            # As an earlier version wrote it: the index key, and no "key" row.
            legacy = keys.seal_index(plain[number], context)
            db.execute("UPDATE blocks SET vectors = ? WHERE block = ?", (legacy, number))
        db.execute("DELETE FROM meta WHERE name = 'key'")
        db.execute(
            "UPDATE meta SET value = ? WHERE name = 'check'",
            (keys.seal_index(b"", CHECK_CONTEXT),),
        )
    hits = semantic_search(vault, "red", 1, settings=embed_settings(models))
    assert hits[0].job_id == job_id(PLANTED)  # read as it is
    report = embed_images(vault, model, workers=1)  # a writer: sealed again, nothing lost
    assert report.embedded == 0 and report.cached == JOBS * 2 + 1
    with sqlite3.connect(cache) as db:
        assert bytes(db.execute("SELECT value FROM meta WHERE name = 'key'").fetchone()[0]) == (
            b"text"
        )
        for digest, number, ids, data in db.execute(
            "SELECT model, block, ids, vectors FROM blocks"
        ):
            context = _vectors_context(digest, number, bytes(ids))
            assert keys.open_bytes(bytes(data), context) == plain[number]
    vault.close()


def test_an_index_behind_head_is_brought_current_and_every_vector_stored(
    vault: Vault, models: Path
) -> None:
    """Each block is stored under a lock the run holds: the index it reads then must have
    been brought to HEAD before, or it names none of the images and none is stored."""
    fill(vault)
    vault.close()
    shutil.rmtree(vault.path / "index")  # behind HEAD, as after an upgrade from format 8
    reopened = Vault.open(vault.path)
    try:
        model = ImageModel.load(models / "image.onnx")
        report = embed_images(reopened, model, workers=1)
        with EmbeddingStore.open(reopened) as store:
            assert store.count(model.digest) == JOBS * 2
        assert report.embedded == JOBS * 2
    finally:
        reopened.close()
