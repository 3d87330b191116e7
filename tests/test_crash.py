"""Kill an import with SIGKILL at random moments: the vault stays consistent and a rerun completes."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mjvault import Vault
from mjvault.integrity.verify import verify
from mjvault.sources.importer import import_archive
from mjvault.testing.archive import write_sample_archive

IMPORT_SCRIPT = """
import sys
from pathlib import Path
from mjvault import Vault
from mjvault.sources.importer import import_archive
vault = Vault.open(sys.argv[1])
import_archive(vault, Path(sys.argv[2]), checkpoint_jobs=7)
"""


@pytest.mark.slow
def test_sigkill_during_import_never_damages_the_vault(tmp_path: Path) -> None:
    archive = tmp_path / "archive"
    write_sample_archive(archive, jobs=120, seed=11)
    rng = random.Random(20261127)
    vault_dir = tmp_path / "vault"
    Vault.init(vault_dir).close()
    # How long a full run takes here, to spread the kills over it.
    reference = tmp_path / "reference"
    started = time.monotonic()
    with Vault.init(reference) as ref:
        import_archive(ref, archive)
    duration = max(time.monotonic() - started, 0.2) + 0.3  # + interpreter start-up
    for _trial in range(12):
        child = subprocess.Popen(
            [sys.executable, "-c", IMPORT_SCRIPT, str(vault_dir), str(archive)],
            stderr=subprocess.DEVNULL,
        )
        time.sleep(rng.uniform(0.05, duration))
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
        with Vault.open(vault_dir) as vault:
            report = verify(vault, read_data=True)
            assert report.ok, [p.to_json() for p in report.problems]
    with Vault.open(vault_dir) as vault:
        final = import_archive(vault, archive)
        assert not final.problems
        assert verify(vault, read_data=True).ok
        with Vault.open(reference) as ref:
            head, ref_head = vault.head(), ref.head()
            assert head is not None and ref_head is not None
            # Same jobs, same objects: the tree is canonical, so equal content means equal root.
            assert head.tree == ref_head.tree
        leftovers = os.listdir(vault_dir / "tmp")
        assert leftovers == []
