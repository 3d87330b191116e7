"""Hostile records and damaged objects: one-line errors, never a jammed vault."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import zstandard

from mjvault import Vault
from mjvault.errors import CorruptObject
from mjvault.model import RecordError, job_from_json
from mjvault.sources.importer import import_archive
from mjvault.store.codec import MAGIC_FRAMED, unframe_plain
from tests.conftest import record_json, run_cli


@pytest.mark.parametrize(
    "raw",
    [
        b'{"id": "b", "n": ' + b"1" * 5000 + b"}",  # int longer than Python converts
        b'{"id": "d", "x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",  # nested too deep
        json.dumps({"id": "x" * 600, "prompt": "p"}).encode(),  # an id no index key can hold
        json.dumps({"id": "ctl\x01id"}).encode(),
    ],
)
def test_malformed_records_are_record_errors(raw: bytes) -> None:
    with pytest.raises(RecordError):
        job_from_json(raw)


def test_odd_values_parse_to_nothing_rather_than_fail() -> None:
    job = job_from_json(
        json.dumps({"id": "t1", "enqueue_time": "0001-01-01T00:00:00+01:00", "width": "²"}).encode()
    )
    assert job.enqueue_time is None and job.width is None


def test_a_bad_record_is_reported_and_the_next_import_still_works(
    vault: Vault, tmp_path: Path
) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "20240101-000000_bad.json").write_text(json.dumps({"id": "x" * 600}))
    (folder / "20240101-000000_good-1.json").write_bytes(record_json("good-1"))
    report = import_archive(vault, folder)
    assert [Path(p.path).name for p in report.problems] == ["20240101-000000_bad.json"]
    assert report.stats.jobs_new == 1
    second = tmp_path / "in2"
    second.mkdir()
    (second / "20240102-000000_good-2.json").write_bytes(record_json("good-2"))
    assert import_archive(vault, second).stats.jobs_new == 1
    assert {e.job_id for e in vault.entries()} == {"good-1", "good-2"}


def test_a_zstd_header_claiming_terabytes_is_corruption_not_memory_error() -> None:
    frame = bytearray(zstandard.ZstdCompressor(write_content_size=True).compress(b"x" * 100))
    # Frame header descriptor: set an 8-byte content size field claiming 2**40 bytes.
    forged = (
        b"\x28\xb5\x2f\xfd" + bytes([0xE0]) + (1 << 40).to_bytes(8, "little") + bytes(frame[6:])
    )
    with pytest.raises(CorruptObject):
        unframe_plain(MAGIC_FRAMED + b"\x01\x01" + forged)


def test_a_missing_manifest_does_not_hide_the_other_snapshots(vault: Vault) -> None:
    with vault.writer("t") as writer:
        writer.add_job(record_json("j1"), [])
    (vault.path / "refs" / "snapshots" / ("ab" * 32)).touch()
    assert len(vault.snapshots()) == 1
    log = run_cli("--vault", str(vault.path), "log")
    assert log.returncode == 0 and b"1 jobs" in log.stdout


def test_non_utf8_passphrase_is_one_line_without_the_secret(tmp_path: Path) -> None:
    env = {"MJVAULT_PASSPHRASE": "pa\udcffss"}
    result = run_cli("init", "--encrypt", str(tmp_path / "v"), env={k: v for k, v in env.items()})
    err = result.stderr.decode("utf-8", "replace")
    assert result.returncode != 0 and "Traceback" not in err
    assert "not valid UTF-8" in err and "pa" not in err.replace("passphrase", "")


def test_an_os_error_is_one_line(tmp_path: Path) -> None:
    vault = tmp_path / "v"
    assert run_cli("init", str(vault)).returncode == 0
    os.rmdir(vault / "tmp")
    (vault / "tmp").write_text("in the way")
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "20240101-000000_j.json").write_bytes(record_json("j"))
    result = run_cli("--vault", str(vault), "import", str(folder))
    err = result.stderr.decode()
    assert result.returncode == 1 and "Traceback" not in err
    assert err.strip().splitlines() == [f"mjvault: error: File exists: {vault / 'tmp'}"]


def test_lone_surrogates_in_text_are_replaced_and_in_ids_refused(vault: Vault) -> None:
    raw = b'{"id": "s1", "full_command": "half an emoji \\ud83d here --ar 1:1", "username": "\\udc00"}'
    job = job_from_json(raw)
    assert job.prompt == "half an emoji \ufffd here" and job.username == "\ufffd"
    with vault.writer("t") as writer:
        writer.add_job(raw, [], job)
    assert vault.record_json(vault.entry("s1")) == raw  # the source bytes are kept verbatim
    assert vault.current_index().get("s1") is not None
    with pytest.raises(RecordError):
        job_from_json(b'{"id": "\\ud800"}')
