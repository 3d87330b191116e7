import hashlib
import io
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from mjvault.errors import UsageError
from mjvault.model import job_from_json
from mjvault.testing.archive import write_sample_archive

ROOT = Path(__file__).resolve().parents[2]
STEM = re.compile(r"^(\d{8}-\d{6})_([0-9a-f-]{36})")


def _tree(root: Path) -> dict[str, tuple[str, int]]:
    return {
        p.relative_to(root).as_posix(): (
            hashlib.sha256(p.read_bytes()).hexdigest(),
            p.stat().st_mtime_ns,
        )
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_same_arguments_give_an_identical_tree_and_another_seed_does_not(tmp_path: Path) -> None:
    first = write_sample_archive(tmp_path / "a", jobs=40, seed=3, with_problems=True)
    write_sample_archive(tmp_path / "b", jobs=40, seed=3, with_problems=True)
    write_sample_archive(tmp_path / "c", jobs=40, seed=4, with_problems=True)
    assert _tree(tmp_path / "a") == _tree(tmp_path / "b")
    assert _tree(tmp_path / "a") != _tree(tmp_path / "c")
    assert first.files == len(_tree(tmp_path / "a"))
    assert first.bytes == sum(p.stat().st_size for p in (tmp_path / "a").rglob("*") if p.is_file())


def test_layout_records_prompts_and_images_follow_the_scripts(tmp_path: Path) -> None:
    summary = write_sample_archive(tmp_path, jobs=120, seed=5)
    records = sorted(tmp_path.rglob("*.json"))
    assert len(records) == summary.jobs == 120
    extensions = set()
    grids = 0
    for path in records:
        stamp, job_id = STEM.match(path.name).groups()  # type: ignore[union-attr]
        rel = path.relative_to(tmp_path).parts
        assert rel[0] == stamp[:4] and rel[1] == f"{stamp[:4]}-{stamp[4:6]}"
        assert rel[2] == f"{stamp[:4]}-{stamp[4:6]}-{stamp[6:8]}"
        raw = path.read_bytes()
        assert raw.startswith(b"{\n  ") and raw.isascii()
        job = job_from_json(raw)
        assert job.id == job_id
        assert job.enqueue_time is not None and job.enqueue_time.strftime("%Y%m%d-%H%M%S") == stamp
        prompt = path.with_name(path.name[: -len(".json")] + ".prompt.txt").read_text()
        assert prompt.startswith("Prompt:\n    ") and "\nFull command:\n    " in prompt
        stem = path.name[: -len(".json")]
        images = sorted(
            p
            for p in path.parent.iterdir()
            if p.name.startswith(stem) and p.suffix in (".png", ".webp", ".jpg")
        )
        expected = len(job.media())
        assert len(images) == expected
        if expected == 4:
            grids += 1
            assert [p.stem[-2:] for p in images] == ["-1", "-2", "-3", "-4"]
        for image in images:
            extensions.add(image.suffix)
            Image.open(io.BytesIO(image.read_bytes())).load()
    assert extensions == {".png", ".webp", ".jpg"}
    assert grids > 0


def test_problems_are_written_and_reported(tmp_path: Path) -> None:
    summary = write_sample_archive(tmp_path, jobs=20, seed=2, with_problems=True)
    assert len(summary.problems) == 5
    kinds = {}
    for relative in summary.problems:
        data = (tmp_path / relative).read_bytes()
        kinds[Path(relative).suffix + (":empty" if not data else "")] = data
    assert b"<html" in b"".join(kinds.values())
    assert ".docx" in kinds and ".png" in kinds and ".json:empty" in kinds
    for relative in summary.problems:
        if relative.endswith(".json") and (tmp_path / relative).stat().st_size:
            with pytest.raises(json.JSONDecodeError):
                json.loads((tmp_path / relative).read_bytes())
    orphan = next(r for r in summary.problems if r.endswith(".png"))
    assert not (tmp_path / orphan).with_suffix(".json").exists()


def test_refuses_a_non_empty_directory(tmp_path: Path) -> None:
    (tmp_path / "keep.txt").write_text("x")
    with pytest.raises(UsageError):
        write_sample_archive(tmp_path, jobs=1, seed=1)


def test_script_prints_a_summary(tmp_path: Path) -> None:
    out = subprocess.run(
        [
            sys.executable,
            str(ROOT / "scripts/make_sample_archive.py"),
            str(tmp_path / "x"),
            "--jobs",
            "5",
            "--seed",
            "1",
            "--with-problems",
            "--json",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    summary = json.loads(out.stdout)
    assert summary["jobs"] == 5 and summary["images"] >= 5 and len(summary["problems"]) == 5
    again = subprocess.run(
        [sys.executable, str(ROOT / "scripts/make_sample_archive.py"), str(tmp_path / "x")],
        capture_output=True,
        text=True,
    )
    assert again.returncode != 0 and "not an empty directory" in again.stderr
