"""A checkout killed at any moment (SIGKILL) leaves a view the next run completes.

The rerun adopts the files the killed run made (nothing "in the way"), leaves no temporary
file behind, and ends with exactly the view a clean checkout makes; meanwhile
`verify --views` notices whenever the view's state and its files disagree.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mjvault import Vault
from mjvault.integrity.viewcheck import verify_views
from mjvault.testing.accounts import Account
from mjvault.views.links import TEMP_PREFIX
from mjvault.views.registry import ViewNotFound, ViewRegistry
from tests.conftest import run_cli

TRIALS = 3
TEMPLATE = "{date:%Y/%m}/{prompt:40}_{job_id}_{index}.{ext}"


@pytest.fixture(scope="module")
def vault_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """About 2,000 images from the project's account generator, built once for the module.

    Each test adds and forgets its own views; nothing else in the vault changes.
    """
    path = tmp_path_factory.mktemp("kill") / "vault"
    account = Account.generate(17, 700)
    with Vault.init(path) as vault, vault.writer("test") as writer:
        for job in account.jobs:
            media = [account.media_bytes(p) for p in job.media_paths]
            oids = [writer.put_media(data) for data in media if data is not None]
            writer.add_job(json.dumps(job.record_v1()).encode(), oids)
    return path


def start_checkout(vault_path: Path, directory: Path, link: str) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MJVAULT_")}
    command = [sys.executable, "-m", "mjvault", "--vault", str(vault_path), "--json", "checkout"]
    return subprocess.Popen(
        [*command, str(directory), "--link", link, "--template", TEMPLATE],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def layout(root: Path) -> dict[str, tuple[str, str]]:
    """Every file under ``root``: a link by its target, a file by its content's hash."""
    found: dict[str, tuple[str, str]] = {}
    for folder, _dirs, names in os.walk(root):
        for name in names:
            path = os.path.join(folder, name)
            relpath = os.path.relpath(path, root)
            if os.path.islink(path):
                found[relpath] = ("link", os.readlink(path))
            else:
                with open(path, "rb") as handle:
                    found[relpath] = ("file", hashlib.sha256(handle.read()).hexdigest())
    return found


def temp_files(root: Path) -> list[str]:
    return [
        os.path.join(folder, name)
        for folder, _dirs, names in os.walk(root)
        for name in names
        if name.startswith(TEMP_PREFIX)
    ]


def recorded(vault_path: Path, name: str) -> dict[str, str] | None:
    """The view's state: each file it says it made and the object it shows."""
    with Vault.open(vault_path) as vault:
        try:
            view = ViewRegistry(vault).load(name)
        except ViewNotFound:
            return None
        return {record.path: record.oid for _, _, record in view.iter_files()}


def view_problems(vault_path: Path) -> list[str]:
    with Vault.open(vault_path) as vault:
        return [problem.message for problem in verify_views(vault).problems]


def forget(vault_path: Path, name: str) -> None:
    with Vault.open(vault_path) as vault:
        registry = ViewRegistry(vault)
        shutil.rmtree(registry.load(name).definition.directory)
        registry.delete(name)


def run_kill_loop(vault_path: Path, tmp_path: Path, link: str, seed: int) -> None:
    rng = random.Random(seed)
    # A clean checkout, to compare with and to learn how long one takes here.
    reference = tmp_path / f"reference-{link}"
    started = time.monotonic()
    clean = start_checkout(vault_path, reference, link)
    _, err = clean.communicate(timeout=120)
    duration = time.monotonic() - started
    assert clean.returncode == 0, err.decode()
    expected = layout(reference)
    expected_state = recorded(vault_path, reference.name)
    assert expected_state is not None and len(expected) == len(expected_state) > 1500
    killed = 0
    for trial in range(TRIALS):
        name = f"{link}{trial}"
        directory = tmp_path / name
        process = start_checkout(vault_path, directory, link)
        # Once the directory exists the files are being made: kill anywhere in that stretch.
        deadline = time.monotonic() + 60
        while not directory.exists() and process.poll() is None:
            assert time.monotonic() < deadline, "the checkout never started"
            time.sleep(0.005)
        time.sleep(rng.uniform(0, duration * 0.6))
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
            killed += 1
        process.communicate(timeout=60)

        state = recorded(vault_path, name)
        on_disk = layout(directory)
        if state is None:
            assert not on_disk, "files were made before the view's state was saved"
        elif set(state) != set(on_disk) or temp_files(directory):
            assert view_problems(vault_path), "verify --views missed a view that disagrees"

        rerun = start_checkout(vault_path, directory, link)
        out, err = rerun.communicate(timeout=120)
        assert rerun.returncode == 0, err.decode()
        report = json.loads(out)
        assert (report["conflicts"], report["skipped"], report["kept"]) == (0, 0, 0), err.decode()
        assert temp_files(directory) == []
        assert layout(directory) == expected
        assert recorded(vault_path, name) == expected_state
        assert view_problems(vault_path) == []
        forget(vault_path, name)  # so later checks do not go over this view again
    assert killed >= 2
    done = run_cli("--vault", str(vault_path), "verify", "--views")
    assert done.returncode == 0, done.stdout + done.stderr
    forget(vault_path, reference.name)


@pytest.mark.slow
def test_symlink_checkout_killed_then_rerun(vault_path: Path, tmp_path: Path) -> None:
    run_kill_loop(vault_path, tmp_path, "symlink", seed=20261203)


@pytest.mark.slow
def test_copy_checkout_killed_then_rerun(vault_path: Path, tmp_path: Path) -> None:
    run_kill_loop(vault_path, tmp_path, "copy", seed=20261204)
