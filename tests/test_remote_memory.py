"""Push, pull and a remote's verify hold nothing per object for the whole run.

Each runs in a child process of its own (tests/peak_rss.py) against a folder remote, for two
vaults five times apart in size; their peaks must stay within a small constant of each other.
A set of the remote's ids, a plan item per object or a dict of fetched tree nodes shows as
hundreds of bytes an object, which the 20,000 objects between the two sizes turn into
several MB.

The buffers that are bounded by design — the remote pack being filled (16 MB), the objects a
pull stages before publishing them (20,000) — are made small in the children, so both sizes
fill them and what is left to differ is what grows with the archive.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tests.peak_rss import run_measured
from tests.test_checkout_memory import build

SMALL_JOBS, LARGE_JOBS = 1000, 5000  # 5,000 and 25,000 objects (4 images, a record a job)
# What may differ: SQLite's and LMDB's page caches fill further, allocator slack. Before the scratch
# tables push grew by 13.4 MB and pull by 12.5 MB here; after, by about 5 and 7; with the pack
# cache's pages released and remote packs streamed to the spool, by about 4 and 3.
# A remote's verify: +2.5 MB; +8.7 MB when it held the remote's ids and the objects its
# snapshots name in sets.
ALLOWED_GROWTH_MB = {"push": 9, "clone": 9, "verify --remote": 5}

PUSH = """
import sys
from pathlib import Path
from mjvault import Vault
from mjvault.remotes import push as push_module
from mjvault.remotes.config import RemoteSpec, normalise_url
from mjvault.remotes.session import connect

push_module.PACK_TARGET_BYTES = 256 * 1024
with Vault.open(Path(sys.argv[1])) as vault:
    with connect(vault, RemoteSpec("r", normalise_url(sys.argv[2])), create=True) as link:
        report = push_module.push(vault, link)
assert report.ok, report.problems
print(report.objects_sent)
"""

# What clone does before it builds the vault's index (the index's own memory is not the
# remotes' to flatten: docs/design.md, flat memory).
CLONE = """
import sys
from pathlib import Path
from mjvault import Vault
from mjvault.remotes import pull as pull_module
from mjvault.remotes.config import RemoteSpec, normalise_url
from mjvault.remotes.session import connect

pull_module.FLUSH_OBJECTS = 2000
with Vault.init(Path(sys.argv[2])) as vault:
    with connect(vault, RemoteSpec("origin", normalise_url(sys.argv[1]))) as link:
        report = pull_module.pull(vault, link, update_index=False)
assert report.ok, report.problems
print(report.objects_received)
"""


# `verify --remote` with --read-data: the remote's listing lives in a scratch table, and each
# object is checked as it streams past.
VERIFY = """
import sys
from pathlib import Path
from mjvault import Vault
from mjvault.remotes.config import RemoteSpec, normalise_url
from mjvault.remotes.session import connect
from mjvault.remotes.verify import verify_remote

with Vault.open(Path(sys.argv[1])) as vault:
    with connect(vault, RemoteSpec("r", normalise_url(sys.argv[2]))) as link:
        report = verify_remote(link, read_data=True, scratch_dir=Path(sys.argv[3]))
assert report.ok, report.problems
print(report.objects_read)
"""


def measure(script: str, args: list[str], workdir: Path) -> tuple[float, int]:
    workdir.mkdir()
    root = Path(__file__).resolve().parents[1]
    done = run_measured(
        [sys.executable, "-c", script, *args], workdir=workdir, cwd=root, timeout=300
    )
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    return done.peak_rss_mb, int(done.stdout)


@pytest.mark.memory
@pytest.mark.parametrize("command", ["push", "clone", "verify --remote"])
def test_push_clone_and_verify_peak_memory_does_not_grow_with_the_vault(
    tmp_path: Path, command: str
) -> None:
    peaks = {}
    for jobs in (SMALL_JOBS, LARGE_JOBS):
        vault = build(tmp_path / f"vault-{jobs}", jobs)
        remote = tmp_path / f"remote-{jobs}"
        pushed, sent = measure(PUSH, [str(vault), str(remote)], tmp_path / f"push-{jobs}")
        assert sent > jobs * 5
        if command == "push":
            peaks[jobs] = pushed
            continue
        if command == "verify --remote":
            scratch = tmp_path / f"scratch-{jobs}"
            checked, read = measure(
                VERIFY, [str(vault), str(remote), str(scratch)], tmp_path / f"verify-{jobs}"
            )
            assert read >= sent
            assert list(scratch.iterdir()) == []  # the scratch file is gone with the check
            peaks[jobs] = checked
            continue
        cloned, received = measure(
            CLONE, [str(remote), str(tmp_path / f"clone-{jobs}")], tmp_path / f"clone-{jobs}-run"
        )
        assert received == sent
        peaks[jobs] = cloned
    grown = peaks[LARGE_JOBS] - peaks[SMALL_JOBS]
    assert grown < ALLOWED_GROWTH_MB[command], (
        f"{command}: {peaks[SMALL_JOBS]:.1f} MB at {SMALL_JOBS} jobs, "
        f"{peaks[LARGE_JOBS]:.1f} MB at {LARGE_JOBS}: +{grown:.1f} MB"
    )


# A push records each remote pack it uploads in the local pack cache (remotes/<name>/packs-*)
# and looks objects up there while planning. Packs of the default size, ids as random as
# object ids; the cache holds the two sizes' worth of earlier pushes.
CACHE = """
import os, sys
from pathlib import Path
from mjvault.remotes.packs import RemotePackIndex

packs, per_pack = int(sys.argv[2]), int(sys.argv[3])
cache = RemotePackIndex(Path(sys.argv[1]))
names = []
for n in range(packs):
    ids = sorted(os.urandom(32) for _ in range(per_pack))
    name = os.urandom(32).hex()
    cache.add(name, ids)
    names.append((name, ids[:: per_pack // 1000]))
found = sum(cache.locate(i.hex()) == name for name, ids in names for i in ids)
cache.close()
print(found)
"""
CACHE_PACK_IDS = 20000  # a 16 MB pack of 800-byte records


def test_the_remote_pack_cache_releases_its_pages(tmp_path: Path) -> None:
    """Each pack's ids went in one write transaction, which dirtied (in memory) a leaf page of
    the cache for nearly every id, and lookups left the cache's map resident: ~170 bytes an
    object of peak RSS, over 150 MB at a million jobs."""
    peaks = {}
    for packs in (3, 15):
        args = [str(tmp_path / f"cache-{packs}"), str(packs), str(CACHE_PACK_IDS)]
        peak, found = measure(CACHE, args, tmp_path / f"run-{packs}")
        assert found >= packs * 1000
        peaks[packs] = peak
    grown = peaks[15] - peaks[3]
    assert grown < ALLOWED_GROWTH_MB["push"], (
        f"pack cache: {peaks[3]:.1f} MB at 60,000 ids, {peaks[15]:.1f} MB at 300,000: "
        f"+{grown:.1f} MB"
    )


# A pull reads packed objects from the remote packs it downloads into its spool, from a pool
# of threads, in id order: every pack is wanted at once.
SPOOL = """
import itertools
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from mjvault.concurrency import bounded_map
from mjvault.remotes.folder import FolderBackend
from mjvault.remotes.packs import RemotePacks

packs = RemotePacks(FolderBackend(Path(sys.argv[1])), Path(sys.argv[2]))
wanted = itertools.islice(packs.iter_ids(), 0, None, 7)
with ThreadPoolExecutor(8) as pool:
    found = sum(1 for data in bounded_map(pool, packs.read_entry, wanted, window=32) if data)
packs.close()
print(found)
"""
SPOOL_PACK_BYTES, SPOOL_ENTRY_BYTES = 8 * 1024 * 1024, 2048


def write_remote_packs(root: Path, count: int) -> None:
    import os

    from mjvault.remotes.packs import REMOTE_PACK_VERSION
    from mjvault.store.packfile import encode_pack, pack_name

    (root / "packs").mkdir(parents=True)
    for _ in range(count):
        entries = [
            (os.urandom(32), os.urandom(SPOOL_ENTRY_BYTES))
            for _ in range(SPOOL_PACK_BYTES // SPOOL_ENTRY_BYTES)
        ]
        data, _ = encode_pack(entries, None, REMOTE_PACK_VERSION)  # as push writes them
        (root / "packs" / pack_name(data)).write_bytes(data)


def test_pull_reads_many_remote_packs_in_bounded_memory(tmp_path: Path) -> None:
    """Each thread that met a pack not yet downloaded held it whole in memory (8 threads, as
    many packs at once), and the spool kept four packs' entries as Python objects."""
    peaks = {}
    for count in (1, 6):
        remote = tmp_path / f"remote-{count}"
        write_remote_packs(remote, count)
        args = [str(remote), str(tmp_path / f"cache-{count}")]
        peak, found = measure(SPOOL, args, tmp_path / f"run-{count}")
        assert found == -(-count * (SPOOL_PACK_BYTES // SPOOL_ENTRY_BYTES) // 7)
        peaks[count] = peak
    grown = peaks[6] - peaks[1]
    assert grown < ALLOWED_GROWTH_MB["clone"], (
        f"spool: {peaks[1]:.1f} MB reading 1 pack, {peaks[6]:.1f} MB reading 6: +{grown:.1f} MB"
    )


def test_pull_publishes_what_it_packs_before_it_passes_a_bound(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Records and tree nodes wait in the vault's pack builder as plaintext until a flush. A
    pull flushed by count (20,000 objects), and a million-job tree has fewer nodes than
    that (~20 KB each): the whole tree waited in memory, up to the builder's own 48 MB."""
    from mjvault import Vault
    from mjvault.remotes import pull as pull_module
    from mjvault.remotes.config import RemoteSpec, normalise_url
    from mjvault.remotes.push import push
    from mjvault.remotes.session import connect
    from tests.test_remote_packs import add_records

    source = Vault.init(tmp_path / "source")
    add_records(source, 200, shared_image=False)
    remote = RemoteSpec("origin", normalise_url(str(tmp_path / "remote")))
    with connect(source, remote, create=True) as link:
        assert push(source, link).ok
    monkeypatch.setattr(pull_module, "FLUSH_OBJECTS", 10**9)
    monkeypatch.setattr(pull_module, "FLUSH_PACKED_BYTES", 16 * 1024, raising=False)
    with Vault.init(tmp_path / "copy") as copy:
        with connect(copy, remote) as link:
            report = pull_module.pull(copy, link)
        assert report.ok and copy.head() == source.head()
        packs = list((copy.path / "packs").iterdir())
        # 200 records and their nodes: well over 16 KiB of plaintext, so several flushes.
        assert len(packs) >= 4, packs
    source.close()
