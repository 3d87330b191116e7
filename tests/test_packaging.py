"""The wheel installs into a fresh venv and runs: `mjvault --version`, `python -m mjvault`.

About 5-10 s: one isolated wheel build (setuptools from pip's cache) and a venv without pip.
Dependencies come from this test environment's site-packages through a .pth file, so nothing
is downloaded beyond the build backend.
"""

from __future__ import annotations

import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

import mjvault

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.packaging


def run(*args: str | Path, cwd: Path) -> str:
    done = subprocess.run(
        [str(a) for a in args], cwd=cwd, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_wheel_installs_and_runs_in_a_fresh_venv(tmp_path: Path) -> None:
    run(
        sys.executable,
        "-m",
        "pip",
        "wheel",
        ROOT,
        "--no-deps",
        "-q",
        "-w",
        tmp_path / "dist",
        cwd=tmp_path,
    )
    (wheel,) = (tmp_path / "dist").glob("mjvault-*.whl")
    # Package data: the gallery's page, script and style are copied from the installed package.
    static = {
        f"mjvault/find/gallery/static/{n}" for n in ("index.html", "gallery.css", "gallery.js")
    }
    assert static <= set(zipfile.ZipFile(wheel).namelist())

    venv = tmp_path / "venv"
    run(sys.executable, "-m", "venv", "--without-pip", venv, cwd=tmp_path)
    python = venv / "bin" / "python"
    site = run(
        python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])", cwd=tmp_path
    ).strip()
    # Dependencies from this environment, after the venv's own packages (a .pth appends).
    Path(site, "_test_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    run(
        sys.executable,
        "-m",
        "pip",
        "--python",
        python,
        "install",
        "--no-deps",
        "-q",
        wheel,
        cwd=tmp_path,
    )

    assert run(venv / "bin" / "mjvault", "--version", cwd=tmp_path) == (
        f"mjvault, version {mjvault.__version__}\n"
    )
    assert "Usage:" in run(python, "-m", "mjvault", "--help", cwd=tmp_path)
    location = run(python, "-c", "import mjvault; print(mjvault.__file__)", cwd=tmp_path)
    assert location.startswith(site), "the installed wheel, not the source tree, must run"
    # Not only the root: a command that reads configuration works from the wheel.
    out = run(venv / "bin" / "mjvault", "config", "path", cwd=tmp_path)
    assert "config.toml" in out
