"""Export: every format round-trips rows, including text that breaks naive writers."""

from __future__ import annotations

import csv
import io
import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from mjvault import Vault
from mjvault.find.export import COLUMNS, LIST_COLUMNS, export, job_rows
from tests.conftest import png_bytes, run_cli

NASTY = 'line one\nline "two", with, commas\r\n猫耳の少女 🦊✨ 👁️‍🗨️ \\ back\tslash'


@pytest.fixture(scope="module")
def filled(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Vault]:
    vault = Vault.init(tmp_path_factory.mktemp("export") / "vault")
    with vault.writer("test") as writer:
        image = writer.put_media(png_bytes(1))
        for i in range(5):
            record = {
                "id": f"job-{i}",
                "enqueue_time": f"2024-0{i + 1}-02 03:04:05.678900",
                "type": "grid" if i % 2 else "upscale",
                "full_command": f"{NASTY} number {i} --ar 16:9 --v 6.1 --s {100 * i} --tile",
                "username": "ann",
                "width": 1456,
                "height": 816,
            }
            writer.add_job(json.dumps(record).encode(), [image, None] if i == 0 else [image])
    yield vault
    vault.close()


def exported(vault: Vault, fmt: str, query: str | None = None) -> bytes:
    out = io.BytesIO()
    export(vault, out, fmt, query)
    return out.getvalue()


def test_rows_hold_everything(filled: Vault) -> None:
    rows = {row["id"]: row for row in job_rows(filled)}
    assert set(rows) == {f"job-{i}" for i in range(5)}
    row = rows["job-0"]
    assert row["full_command"].startswith(NASTY)
    assert row["params"] == {"ar": "16:9", "version": "6.1", "stylize": 0, "tile": True}
    assert row["time"] == "2024-01-02T03:04:05.678900+00:00"
    assert len(row["images"]) == 2 and row["images"][1] is None
    assert row["view_paths"] == []


def test_jsonl_and_json_round_trip(filled: Vault) -> None:
    expected = list(job_rows(filled))
    lines = exported(filled, "jsonl").decode("utf-8").splitlines()
    assert [json.loads(line) for line in lines] == expected
    assert json.loads(exported(filled, "json")) == expected


def test_csv_round_trip(filled: Vault) -> None:
    expected = list(job_rows(filled))
    reader = csv.DictReader(io.StringIO(exported(filled, "csv").decode("utf-8"), newline=""))
    assert tuple(reader.fieldnames or ()) == COLUMNS
    back = list(reader)
    assert len(back) == len(expected)
    for row, want in zip(back, expected, strict=True):
        for name in COLUMNS:
            value = json.loads(row[name]) if name in LIST_COLUMNS else row[name]
            plain = "" if want[name] is None else str(want[name])
            assert value == (want[name] if name in LIST_COLUMNS else plain), name


def test_a_query_selects_newest_first(filled: Vault) -> None:
    rows = [json.loads(line) for line in exported(filled, "jsonl", "type:grid").splitlines()]
    assert [r["id"] for r in rows] == ["job-3", "job-1"]
    assert exported(filled, "json", "nothing-matches") == b"[]\n"


def test_parquet_round_trip(filled: Vault) -> None:
    pq = pytest.importorskip("pyarrow.parquet", reason="pyarrow (the parquet extra) is absent")
    table = pq.read_table(io.BytesIO(exported(filled, "parquet")))
    back = table.to_pylist()
    expected = list(job_rows(filled))
    assert [r["id"] for r in back] == [r["id"] for r in expected]
    assert back[0]["full_command"] == expected[0]["full_command"]
    assert json.loads(back[0]["params"]) == expected[0]["params"]
    assert back[0]["images"] == expected[0]["images"]
    assert back[0]["time"].isoformat() == expected[0]["time"]


def test_cli_writes_a_file_and_explains_missing_pyarrow(filled: Vault, tmp_path: Path) -> None:
    target = tmp_path / "out.csv"
    done = run_cli("--vault", str(filled.path), "export", "-f", "csv", "-o", str(target), "v:6")
    assert done.returncode == 0, done.stderr
    assert b"exported 5 jobs" in done.stderr
    with open(target, encoding="utf-8", newline="") as handle:
        commands = [row["full_command"] for row in csv.DictReader(handle)]
    assert len(commands) == 5 and all(c.startswith(NASTY) for c in commands)
    # The same command where pyarrow cannot be imported: one line, no traceback.
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(sys.modules, "pyarrow", None)  # type: ignore[arg-type]
        patch.setitem(sys.modules, "pyarrow.parquet", None)  # type: ignore[arg-type]
        blocked = run_cli(
            "--vault",
            str(filled.path),
            "export",
            "-f",
            "parquet",
            "-o",
            str(tmp_path / "x.parquet"),
        )
    assert blocked.returncode == 1
    assert blocked.stderr.decode().strip().splitlines() == [
        "mjvault: error: Parquet export needs pyarrow, which is not installed "
        "(pip install 'mjvault[parquet]')"
    ]
    assert not (tmp_path / "x.parquet").exists()
