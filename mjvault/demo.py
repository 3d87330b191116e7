"""A sync with nothing to set up: the bundled Midjourney-compatible server, in this process.

``run_demo`` generates a deterministic account (mixed job types, a few videos), serves it on
127.0.0.1 with :class:`~mjvault.testing.server.FakeMidjourney`, and runs the real
:func:`mjvault.sync.sync` through the real client into a vault. No account, no network: the
session token is a random one the server is told, and it is never shown.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mjvault.errors import VaultExists
from mjvault.reports import Report
from mjvault.sources.midjourney import ClientSettings, MidjourneyClient
from mjvault.sources.midjourney.settings import Secret
from mjvault.sync import SyncOptions, SyncReport, sync
from mjvault.testing.accounts import Account
from mjvault.testing.server import FakeMidjourney
from mjvault.vault import Vault, is_vault

DEFAULT_DEMO_DIR = Path("mjvault-demo")
DEMO_SEED = 21  # 60 jobs of this seed include grids, upscales, variations and two videos
DEMO_JOBS = 60
SAMPLE_JOBS = 4


@dataclass
class DemoJob:
    id: str
    type: str | None
    time: str | None
    prompt: str
    files: list[str]  # where the images are on disk (empty in an encrypted vault)


@dataclass
class DemoResult(Report):
    vault: Path
    created: bool
    report: SyncReport
    jobs_in_vault: int
    samples: list[DemoJob] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        # Its own shape: the sync report is given as "sync", after jobs_in_vault.
        return {
            "vault": str(self.vault),
            "created": self.created,
            "jobs_in_vault": self.jobs_in_vault,
            "sync": self.report.to_json(),
            "samples": [sample.__dict__ for sample in self.samples],
        }


def open_or_create(path: Path, open_vault: Callable[[Path], Vault]) -> tuple[Vault, bool]:
    """The vault at ``path``, created (plain) if the directory is absent or empty."""
    if is_vault(path):
        return open_vault(path), False
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise VaultExists(
            f"{path} exists and is not a vault",
            hint="pass another directory: mjvault demo DIR",
        )
    return Vault.init(path), True


def run_demo(
    path: Path = DEFAULT_DEMO_DIR,
    *,
    jobs: int = DEMO_JOBS,
    seed: int = DEMO_SEED,
    concurrency: int = 8,
    open_vault: Callable[[Path], Vault] = Vault.open,
    on_job: Callable[[str], None] | None = None,
    on_bytes: Callable[[int], None] | None = None,
) -> DemoResult:
    """Serve a generated account on 127.0.0.1 and sync it into the vault at ``path``."""
    account = Account.generate(seed, jobs)
    token = secrets.token_urlsafe(24)
    vault, created = open_or_create(path, open_vault)
    try:
        with FakeMidjourney(account, token=token) as server:
            settings = ClientSettings(
                web_base=server.web_base,
                cdn_base=server.cdn_base,
                api="v3",
                user_id=server.user_id,
                token=Secret(token),
                # The server is this process: no politeness limits to keep.
                max_rps=1000.0,
                burst=100,
                concurrency=concurrency,
                timeout=10.0,
            )
            with MidjourneyClient(settings) as client:
                report = sync(
                    vault,
                    client,
                    SyncOptions(concurrency=concurrency),
                    on_job=on_job,
                    on_bytes=on_bytes,
                )
        samples = [_sample(vault, job.id) for job in account.jobs[:SAMPLE_JOBS]]
        count = sum(1 for _ in vault.entries()) if vault.head() else 0
        return DemoResult(vault.path, created, report, count, samples)
    finally:
        vault.close()


def _sample(vault: Vault, job_id: str) -> DemoJob:
    entry = vault.entry(job_id)
    job = vault.job(entry)
    files = (
        []
        if vault.encrypted
        else [str(vault.object_path(object_id)) for object_id in entry.images if object_id]
    )
    return DemoJob(
        id=job.id,
        type=job.type,
        time=job.enqueue_time.isoformat(timespec="minutes") if job.enqueue_time else None,
        prompt=job.prompt,
        files=files,
    )
