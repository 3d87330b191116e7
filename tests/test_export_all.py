"""``mjvault export --all DIR``: every record and image as stored, the vault's metadata, a
manifest that checks; run again it writes only what is missing or wrong; hostile names and
planted links never take a write outside DIR; memory does not grow with the vault."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import pytest
from config_helpers import isolate
from config_helpers import run_cli as run_in_process

from mjvault import Vault
from mjvault.errors import UsageError
from mjvault.find.export_all import ARCHIVER_STEM, ExportProblem, export_all, stem_template
from mjvault.sources.importer import import_archive
from mjvault.testing.images import make_png, make_webp
from tests.conftest import CHEAP_KDF, PASSPHRASE, record_json

TOKEN = "sess-export-all-secret-token"


def fill(vault: Vault, jobs: int = 4, *, start: int = 0, ids: list[str] | None = None) -> None:
    """Grids of four (image 2 missing), upscales of one, and a WebP under a .png record."""
    with vault.writer("test") as writer:
        for n in range(start, start + jobs):
            job_id = ids[n - start] if ids else f"job-{n:04d}"
            when = f"2024-{n % 12 + 1:02d}-{n % 28 + 1:02d} 10:{n % 60:02d}:00.000000"
            if n % 3 == 1:
                image = writer.put_media(make_webp(n, 40, 30) if n % 2 else make_png(n, 40, 30))
                record = record_json(job_id, f"upscale {n}", type="upscale", enqueue_time=when)
                writer.add_job(record, [image])
            else:
                images = [writer.put_media(make_png(n * 10 + i, 24, 24)) for i in range(4)]
                record = record_json(job_id, f"grid {n}", enqueue_time=when)
                writer.add_job(record, [images[0], images[1], None, images[3]])


def stored(vault: Vault) -> dict[str, tuple[bytes, list[bytes | None]]]:
    return {
        e.job_id: (
            vault.record_json(e),
            [vault.store.read(i) if i else None for i in e.images],
        )
        for e in vault.entries()
    }


def manifest_checks(directory: Path) -> list[dict[str, object]]:
    lines = [json.loads(line) for line in (directory / "manifest.jsonl").read_text().splitlines()]
    for line in lines:
        data = (directory / str(line["path"])).read_bytes()
        assert len(data) == line["size"] and hashlib.sha256(data).hexdigest() == line["sha256"]
    if shutil.which("sha256sum"):
        check = subprocess.run(
            ["sha256sum", "-c", "--quiet", "SHA256SUMS"], cwd=directory, capture_output=True
        )
        assert check.returncode == 0, check.stdout + check.stderr
    return lines


def test_everything_is_exported_and_imports_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    isolate(monkeypatch, tmp_path)
    monkeypatch.setenv("MIDJOURNEY_SESSION_TOKEN", TOKEN)
    with Vault.init(tmp_path / "vault") as vault:
        fill(vault, 6)
        want = stored(vault)
        snapshots = vault.refs.snapshot_ids()
    out = tmp_path / "out"
    at = ("--vault", str(tmp_path / "vault"))
    result = run_in_process(
        capsys, *at, "--json", "export", "--all", str(out), "--template", ARCHIVER_STEM
    )
    assert result.code == 0, result.err
    summary = result.json()
    assert summary["jobs"] == 6 and summary["records_written"] == 6
    assert summary["images_written"] == 4 * 3 + 2 and summary["images_missing"] == 4
    lines = manifest_checks(out)
    assert {line["path"] for line in lines} >= {"snapshots.jsonl", "config.json"}
    # The archiver's layout: day folders, <stamp>_<id>.json, one image bare, a grid's -1 … -4.
    assert (out / "jobs/2024/2024-01/2024-01-01/20240101-100000_job-0000.json").read_bytes() == (
        want["job-0000"][0]
    )
    grid = out / "jobs/2024/2024-01/2024-01-01/20240101-100000_job-0000"
    assert [p.name[len(grid.name) :] for p in sorted(grid.parent.glob(grid.name + "-*"))] == [
        "-1.png",
        "-2.png",
        "-4.png",
    ]
    webp = list((out / "jobs").rglob("*_job-0001.*"))
    assert sorted(p.suffix for p in webp) == [".json", ".webp"]  # named by its bytes
    for line in lines:
        if line["object"] and line["path"].endswith((".png", ".webp")):
            job_images = want[str(line["job"])][1]
            assert (out / str(line["path"])).read_bytes() in job_images
    snaps = [json.loads(s) for s in (out / "snapshots.jsonl").read_text().splitlines()]
    assert sorted(s["id"] for s in snaps) == sorted(snapshots)
    config = json.loads((out / "config.json").read_text())
    assert "sync.jobs" in config and "source.session_token" not in config
    info = json.loads((out / "vault.json").read_text())
    assert info["jobs"] == 6 and info["template"] == ARCHIVER_STEM
    every_byte = b"".join(p.read_bytes() for p in out.rglob("*") if p.is_file())
    assert TOKEN.encode() not in every_byte
    # Portable: the original scripts' importer reads it back, records and images the same.
    with Vault.init(tmp_path / "again") as again:
        report = import_archive(again, out / "jobs")
        assert not report.problems
        assert stored(again) == want


def test_an_encrypted_vault_exports_plaintext_kept_private(tmp_path: Path) -> None:
    with Vault.init(
        tmp_path / "vault", encrypt=True, passphrase=PASSPHRASE, kdf=CHEAP_KDF
    ) as vault:
        fill(vault, 3)
        want = stored(vault)
        report = export_all(vault, tmp_path / "out")
    assert report.images_written == 3 + 1 + 3 and not report.problems
    for line in manifest_checks(tmp_path / "out"):
        path = tmp_path / "out" / str(line["path"])
        assert path.stat().st_mode & 0o777 == 0o600
        if line["job"] and str(line["path"]).endswith(".json"):
            assert path.read_bytes() == want[str(line["job"])][0]
    for folder in [tmp_path / "out", *(p for p in (tmp_path / "out").rglob("*") if p.is_dir())]:
        assert folder.stat().st_mode & 0o777 == 0o700, folder


def test_run_again_it_writes_only_what_is_missing_or_wrong(tmp_path: Path) -> None:
    outside = tmp_path / "outside.png"
    outside.write_bytes(b"not yours to change")
    out = tmp_path / "out"
    with Vault.init(tmp_path / "vault") as vault:
        fill(vault, 5)
        first = export_all(vault, out)
        again = export_all(vault, out)
        assert (again.records_written, again.images_written, again.bytes_written) == (0, 0, 0)
        assert (again.records_kept, again.images_kept) == (5, first.images_written)
        images = sorted(p for p in (out / "jobs").rglob("*.png"))
        images[0].write_bytes(images[0].read_bytes()[:-7])  # cut short, as by a kill
        images[1].unlink()
        images[2].unlink()
        images[2].symlink_to(outside)  # a link planted where an image goes
        record = next((out / "jobs").rglob("*.json"))
        record.write_bytes(b"{}")
        (record.parent / f".{record.name}.partial").write_bytes(b"half")  # a kill's leftover
        fixed = export_all(vault, out)
        assert (fixed.records_written, fixed.images_written) == (1, 3)
        fill(vault, 1, start=5)  # a new job since
        more = export_all(vault, out)
        assert (more.records_written, more.images_written) == (1, 3)
    assert outside.read_bytes() == b"not yours to change"
    assert not images[2].is_symlink()
    manifest_checks(out)


HOSTILE = [
    "../../escaped",
    "/etc/passwd-like",
    "a/../../b",
    "..",
    "CON",
    r"x\..\..\y",
    "a:b",
    "a_b",
    "~",
    ".hidden",
]


@pytest.mark.slow
def test_killed_mid_export_a_second_run_finishes_it(tmp_path: Path) -> None:
    jobs, size = 150, 96 * 1024
    with Vault.init(tmp_path / "vault") as vault, vault.writer("test") as writer:
        for n in range(jobs):
            images = [writer.put_media(b"\x89PNG\r\n\x1a\n" + os.urandom(size)) for _ in range(4)]
            writer.add_job(record_json(f"job-{n:04d}", f"prompt {n}"), images)
    out = tmp_path / "out"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MJVAULT_")}
    command = [sys.executable, "-m", "mjvault", "--vault", str(tmp_path / "vault")]
    child = subprocess.Popen(
        [*command, "export", "--all", str(out)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while child.poll() is None and time.monotonic() < deadline:
        if (out / "jobs").is_dir() and sum(1 for _ in (out / "jobs").rglob("*.png")) >= 60:
            break
        time.sleep(0.005)
    assert child.poll() is None, "the export ended before it could be killed"
    child.kill()  # SIGKILL: no cleanup of any kind
    child.wait()
    assert not (out / "manifest.jsonl").exists()
    with Vault.open(tmp_path / "vault") as vault:
        report = export_all(vault, out)
    assert report.images_kept >= 60 and report.images_written + report.images_kept == 4 * jobs
    assert not report.problems and not list(out.rglob("*.partial"))
    assert len(manifest_checks(out)) == jobs * 5 + 2


def test_hostile_job_ids_stay_inside_and_stay_apart(tmp_path: Path) -> None:
    out = tmp_path / "box" / "out"
    with Vault.init(tmp_path / "vault") as vault:
        fill(vault, len(HOSTILE), ids=HOSTILE)
        for template in ("{job_id}", "{date:%Y}/{job_id}", "{prompt}/{job_id}"):
            target = out / template.count("/").__str__() / str(len(template))
            report = export_all(vault, target, template=template)
            assert report.records_written == len(HOSTILE) and not report.problems
            records = [p for p in target.rglob("*.json")]
            ids = {json.loads(p.read_bytes())["id"] for p in records if p.parent != target}
            assert ids == set(HOSTILE)  # every job its own file, none overwritten
    escaped = [
        p
        for p in tmp_path.rglob("*")
        if p.is_file() and out not in p.parents and (tmp_path / "vault") not in p.parents
    ]
    assert escaped == []


def test_a_link_planted_in_dir_is_not_written_through(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    out = tmp_path / "out"
    (out / "jobs").mkdir(parents=True)
    (out / "jobs" / "2024").symlink_to(elsewhere)
    with Vault.init(tmp_path / "vault") as vault:
        fill(vault, 2)
        with pytest.raises(ExportProblem, match="is a link"):
            export_all(vault, out)
    assert list(elsewhere.iterdir()) == []


def test_templates_that_cannot_name_a_job_are_refused(tmp_path: Path) -> None:
    for bad in ("{date}/{index}_{job_id}", "{job_id:8}", "{prompt}", "{job_id}.{ext}"):
        with pytest.raises(UsageError):
            stem_template(bad)
    stem_template(ARCHIVER_STEM)


def _peak(vault: Vault, out: Path) -> int:
    tracemalloc.start()
    try:
        export_all(vault, out)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_memory_does_not_grow_with_the_vault(tmp_path: Path) -> None:
    with Vault.init(tmp_path / "vault") as vault:
        fill(vault, 100)
        small = _peak(vault, tmp_path / "small")
        fill(vault, 300, start=100)
        large = _peak(vault, tmp_path / "large")
    # Four times the jobs: what the run holds is the same (one job, one piece of a file,
    # counters); 300 more jobs kept at even 1 KB each would show.
    assert large < small + 200_000, (small, large)


def test_cli_refuses_mixing_all_with_row_options(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    isolate(monkeypatch, tmp_path)
    Vault.init(tmp_path / "vault").close()
    at = ("--vault", str(tmp_path / "vault"))
    mixed = run_in_process(capsys, *at, "export", "--all", str(tmp_path / "o"), "-f", "csv")
    assert mixed.code != 0 and "--all" in mixed.err
    alone = run_in_process(capsys, *at, "export", "--template", "{job_id}")
    assert alone.code != 0 and "--template goes with --all" in alone.err
    inside = run_in_process(capsys, *at, "export", "--all", str(tmp_path / "vault" / "x"))
    assert inside.code != 0 and "outside the vault" in inside.err
    assert os.path.exists(tmp_path / "vault" / "x") is False


# Pairs of ids one name once made safe: ``:`` and ``|`` become ``_``. ``x:1`` sorts before
# ``x_1`` and ``x|1`` after it, so each pair meets in both orders, with either record longer.
COLLIDING = [("a:1", "a_1"), ("b|1", "b_1")]


@pytest.mark.parametrize("longer", [0, 1])
def test_jobs_whose_names_collide_never_overwrite_each_other(tmp_path: Path, longer: int) -> None:
    out = tmp_path / "out"
    ids = [job_id for pair in COLLIDING for job_id in pair]
    with Vault.init(tmp_path / "vault") as vault:
        with vault.writer("test") as writer:
            for pair in COLLIDING:
                for n, job_id in enumerate(pair):
                    prompt = "a long prompt " * 40 if n == longer else "short"
                    image = writer.put_media(make_png(len(job_id) + n, 24, 24))
                    writer.add_job(record_json(job_id, prompt), [image])
        want = stored(vault)
        for run in range(2):  # and run again over the first run's files: nothing changes
            report = export_all(vault, out, template="{job_id}")
            assert report.jobs == 4 and not report.problems
            assert report.records_written + report.records_kept == 4
            assert report.records_written == (4 if run == 0 else 0)
            lines = manifest_checks(out)
            records = {p.name: p.read_bytes() for p in (out / "jobs").glob("*.json")}
            assert sorted(json.loads(data)["id"] for data in records.values()) == sorted(ids)
            assert sorted(data for data in records.values()) == sorted(want[i][0] for i in ids)
            paths = [str(line["path"]) for line in lines]
            assert len(paths) == len(set(paths)) == 4 * 2 + 2
            for line in lines:
                if line["job"]:
                    data = (out / str(line["path"])).read_bytes()
                    record, images = want[str(line["job"])]
                    assert data == record or data in images, line


def test_an_unfinished_key_rotation_exports_under_either_secret(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Stopped after its journal, a rotation has sealed nothing again: the images are under
    the retired secret, a job added since under the new one, and each exports."""
    from mjvault.integrity import rotate as rotate_module
    from mjvault.integrity.rotate import rotate

    root = tmp_path / "vault"
    with Vault.init(root, encrypt=True, passphrase=PASSPHRASE, kdf=CHEAP_KDF) as vault:
        fill(vault, 2)

    def stop(*args: object) -> None:
        raise RuntimeError("stopped before any object")

    monkeypatch.setattr(rotate_module, "_reseal_loose", stop)
    with pytest.raises(RuntimeError):
        rotate(root, PASSPHRASE, kdf=CHEAP_KDF)
    monkeypatch.undo()
    with Vault.open(root, passphrase=PASSPHRASE) as vault:
        assert vault.store.keys is not None and vault.store.keys.rotating
        fill(vault, 1, start=2)  # sealed under the new secret
        want = stored(vault)
        report = export_all(vault, tmp_path / "out")
        assert not report.problems, report.problems
        assert report.images_written == 3 + 1 + 3
        # Damage is still found, under either secret, and nothing of it is written.
        (damaged,) = vault.entry("job-0001").images
        assert damaged is not None
        path = vault.store.path(damaged)
        data = bytearray(path.read_bytes())
        data[len(data) // 2] ^= 1
        path.chmod(0o644)
        path.write_bytes(bytes(data))
        again = export_all(vault, tmp_path / "again")
    assert again.images_written == 3 + 3 and again.problem_count == 1, again.problems
    assert "job-0001" in again.problems[0]
    assert not list((tmp_path / "again").rglob("*job-0001.[pw]*"))
    for line in manifest_checks(tmp_path / "out"):
        if line["job"]:
            data = (tmp_path / "out" / str(line["path"])).read_bytes()
            record, images = want[str(line["job"])]
            assert data == record or data in images, line


def test_a_file_at_a_records_name_is_replaced_only_when_it_is_that_jobs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mjvault.find import export_all as module

    out = tmp_path / "out"
    with Vault.init(tmp_path / "vault") as vault:
        fill(vault, 1)
        export_all(vault, out, template="{job_id}")
        record = out / "jobs" / "job-0000.json"
        mine = record.read_bytes()
        # The job's own record, longer (an earlier version): replaced where it is.
        record.write_bytes(json.dumps({"id": "job-0000", "pad": "x" * 5000}).encode())
        again = export_all(vault, out, template="{job_id}")
        assert again.records_written == 1 and record.read_bytes() == mine
        assert sorted(p.name for p in (out / "jobs").glob("*.json")) == ["job-0000.json"]
        # A file too large to be read for its owner is no record of ours: never replaced.
        monkeypatch.setattr(module, "RECORD_READ_MAX", 1000)
        big = b"[" + b"0," * 1000 + b"0]"
        record.write_bytes(big)
        aside = export_all(vault, out, template="{job_id}")
    assert aside.records_written == 1 and record.read_bytes() == big
    (moved,) = [p for p in (out / "jobs").glob("job-0000~*.json")]
    assert moved.read_bytes() == mine
    assert {str(line["path"]) for line in manifest_checks(out)} >= {f"jobs/{moved.name}"}
