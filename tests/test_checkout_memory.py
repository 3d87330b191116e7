"""A checkout's memory does not grow with the number of images it makes.

Each checkout runs in a child process of its own, so its peak RSS is its own and nothing the
test process holds; the two vaults differ eightfold in size, and their checkouts' peaks must
stay within a small constant of each other (measured as tests/peak_rss.py does) (a few KB per image would show as tens of MB).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.peak_rss import run_measured

# Child processes at two archive sizes: their own step (`pytest -m memory`, .ci/run).
pytestmark = pytest.mark.memory

SMALL_JOBS, LARGE_JOBS = 500, 4000  # 2,000 and 16,000 images
# What may differ between the two: the tree walk's bounded node cache and SQLite's bounded
# page cache fill further in the larger vault; neither is per image.
ALLOWED_GROWTH_MB = 10

CHILD = """
import sys
from pathlib import Path
from mjvault import Vault
from mjvault.views.links import LinkKind
from mjvault.views.reconcile import checkout
from mjvault.views.registry import ViewDefinition

with Vault.open(Path(sys.argv[1]), passphrase="correct horse battery staple") as vault:
    vault.current_index()  # brought up to date before measuring: the index is not the checkout
    report = checkout(
        vault, ViewDefinition("all", Path(sys.argv[2]), "{job_id}_{index}.{ext}", LinkKind.SYMLINK)
    )
print(report.added)
"""


BUILD = """
import sys
from pathlib import Path
from mjvault import Vault
from tests.conftest import CHEAP_KDF, PASSPHRASE, png_bytes, record_json

jobs = int(sys.argv[2])
sealed = dict(encrypt=True, passphrase=PASSPHRASE, kdf=CHEAP_KDF) if sys.argv[3] == "1" else {}
with (
    Vault.init(Path(sys.argv[1]), **sealed) as vault,
    vault.writer("test", checkpoint_jobs=jobs) as writer,
):
    for n in range(jobs):
        images = [writer.put_media(png_bytes(n * 4 + i, size=64)) for i in range(4)]
        writer.add_job(record_json(f"job-{n:06d}", f"fox {n}"), images)
"""


def build(path: Path, jobs: int, *, encrypted: bool = False) -> Path:
    # In a child too: the test process stays small for the tests that run after this one.
    root = Path(__file__).resolve().parents[1]
    command = [sys.executable, "-c", BUILD, str(path), str(jobs), "1" if encrypted else "0"]
    subprocess.run(command, check=True, cwd=root)
    return path


def peak_mb(vault: Path, view: Path, images: int, workdir: Path) -> float:
    workdir.mkdir()
    done = run_measured(
        [sys.executable, "-c", CHILD, str(vault), str(view)], workdir=workdir, timeout=300
    )
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    assert int(done.stdout) == images
    return done.peak_rss_mb


@pytest.mark.parametrize("encrypted", [False, True], ids=["plain", "encrypted"])
def test_checkout_peak_memory_does_not_grow_with_the_number_of_images(
    tmp_path: Path, encrypted: bool
) -> None:
    """An encrypted vault's views copy (decrypted) files and seal their list's paths; its
    list is a table on disk all the same."""
    small = build(tmp_path / "small", SMALL_JOBS, encrypted=encrypted)
    large = build(tmp_path / "large", LARGE_JOBS, encrypted=encrypted)
    small_mb = peak_mb(small, tmp_path / "view-small", SMALL_JOBS * 4, tmp_path / "run-small")
    large_mb = peak_mb(large, tmp_path / "view-large", LARGE_JOBS * 4, tmp_path / "run-large")
    assert large_mb - small_mb < ALLOWED_GROWTH_MB, (small_mb, large_mb)
