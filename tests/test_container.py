"""The image: built from the Dockerfile with podman and run as its users would run it.

No container registry is reachable from the machines that run this, so the base image is
made here from Debian's packages (debootstrap, minbase) and handed to the build as
``--build-arg BASE``: the Dockerfile's path for a bare Debian base (Debian's python3) is the
one built. Then, as the image's non-root user with the vault a named volume: ``--version``,
``init``, ``import`` of a sample archive mounted read-only, ``verify``; the image's
healthcheck and compose.yaml's check of ``serve`` on a running container.

Where containers cannot run (no user namespaces, cgroups or overlay a runtime accepts), the
module skips with podman's own error. Podman's storage is private to the run and removed
after it. Marked ``containers``: minutes, its own step in .ci/run.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from mjvault import __version__
from mjvault.testing.archive import write_sample_archive
from tests.conftest import service_missing

pytestmark = pytest.mark.containers

ROOT = Path(__file__).resolve().parent.parent
BASE = "localhost/mjvault-test-base:latest"
IMAGE = "localhost/mjvault-test:latest"
VOLUME = "mjvault-test-vault"
MIRROR = os.environ.get("MJVAULT_DEBIAN_MIRROR", "http://deb.debian.org/debian")
# The trust store the machine's own pip uses: where HTTPS goes through a proxy that signs
# with a local authority, pip in the build needs it too.
HOST_CA = Path(os.environ.get("PIP_CERT") or "/etc/ssl/certs/ca-certificates.crt")
BUILD_TIMEOUT = 20 * 60


def debian_suite() -> str:
    """This machine's Debian release (bookworm: Python 3.11, the oldest mjvault supports)."""
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            key, _, value = line.partition("=")
            if key == "VERSION_CODENAME" and value.strip('"'):
                return value.strip('"')
    except OSError:
        pass
    return "bookworm"


@dataclass
class Podman:
    """podman on a storage of its own, with the options this machine's kernel accepts."""

    home: Path
    driver: str = "overlay"
    runtime: str | None = None
    timings: dict[str, float] = field(default_factory=dict)

    def argv(self, *args: str) -> list[str]:
        # cgroupfs and a file for events: no systemd to ask on a CI machine or in a container.
        return [
            "podman",
            "--root",
            str(self.home / "storage"),
            "--runroot",
            str(self.home / "run"),
            "--storage-driver",
            self.driver,
            "--cgroup-manager",
            "cgroupfs",
            "--events-backend",
            "file",
            *(["--runtime", self.runtime] if self.runtime else []),
            *args,
        ]

    def __call__(
        self, *args: str, timeout: float = 120, check: bool = True, stdin: Any = None
    ) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            self.argv(*args),
            stdin=stdin if stdin is not None else subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and done.returncode != 0:
            pytest.fail(
                f"podman {' '.join(args)} exited {done.returncode}:\n"
                f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}",
                pytrace=False,
            )
        return done

    def run(
        self, *args: str, timeout: float = 120, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """``podman run --rm`` with no network: nothing here needs one."""
        return self(
            "run", "--rm", "--network", "none", *ulimits(), *args, timeout=timeout, check=check
        )


def ulimits() -> list[str]:
    """Explicit limits for the container. podman's defaults (a million open files, as many
    processes) need CAP_SYS_RESOURCE to set, which a sandboxed root may not have; the open
    files this process may have and a few thousand processes need nothing."""
    # Imported here: `resource` is POSIX only, and the module must still be collected (and
    # skip) where it is missing.
    import resource

    files = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if files == resource.RLIM_INFINITY:
        files = 65536
    return ["--ulimit", f"nofile={files}:{files}", "--ulimit", "nproc=4096:4096"]


def tail(text: str, lines: int = 3) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def make_rootfs(work: Path) -> Path:
    """A minimal Debian from Debian's mirror: the base the build starts from."""
    rootfs = work / "rootfs"
    done = subprocess.run(
        ["debootstrap", "--variant=minbase", debian_suite(), str(rootfs), MIRROR],
        capture_output=True,
        text=True,
        timeout=15 * 60,
    )
    if done.returncode != 0:
        service_missing(f"debootstrap from {MIRROR} failed: {tail(done.stdout + done.stderr)}")
    if HOST_CA.is_file():
        shutil.copyfile(HOST_CA, rootfs / "etc" / "mjvault-test-ca.crt")
    return rootfs


def import_base(podman: Podman, rootfs: Path) -> subprocess.CompletedProcess[str]:
    changes = []
    if (rootfs / "etc" / "mjvault-test-ca.crt").is_file():
        changes = ["--change", "ENV=PIP_CERT=/etc/mjvault-test-ca.crt"]
    tar = subprocess.Popen(
        ["tar", "-C", str(rootfs), "--exclude=./var/cache/apt/archives/*.deb", "-c", "."],
        stdout=subprocess.PIPE,
    )
    done = podman("import", *changes, "-", BASE, stdin=tar.stdout, timeout=300, check=False)
    assert tar.wait() == 0
    return done


# Storage drivers and runtimes, fastest first: overlay shares the image's files, vfs copies
# them for every container; crun (podman's default) does not run on hybrid cgroups, runc does.
SETUPS = (("overlay", None), ("overlay", "runc"), ("vfs", None), ("vfs", "runc"))


def working_podman(work: Path, rootfs: Path) -> tuple[Podman | None, list[Podman], str]:
    """The first setup that starts a container from the base, every setup tried (their
    storages to remove), and the last error."""
    tried: dict[str, Podman] = {}
    unusable: set[str] = set()  # drivers the base could not be stored on
    error = "no container runtime installed"
    for driver, runtime in SETUPS:
        if driver in unusable or (runtime is not None and shutil.which(runtime) is None):
            continue
        tool = tried.get(driver)
        if tool is None:
            tool = tried[driver] = Podman(work / driver, driver=driver)
            imported = import_base(tool, rootfs)
            if imported.returncode != 0:
                unusable.add(driver)
                error = tail(imported.stderr)
                continue
        tool.runtime = runtime
        done = tool.run(BASE, "true", check=False)
        if done.returncode == 0:
            return tool, list(tried.values()), ""
        error = tail(done.stderr)
    return None, list(tried.values()), error


@pytest.fixture(scope="module")
def podman(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Podman]:
    """podman with the test's base image stored, on a setup that runs containers here."""
    for name in ("podman", "debootstrap"):
        if shutil.which(name) is None:
            service_missing(f"{name} is not installed (scripts/services/install-podman)")
    if os.geteuid() != 0:
        pytest.skip("debootstrap and rootful podman need root")
    work = tmp_path_factory.mktemp("podman")
    tried: list[Podman] = []
    try:
        started = time.monotonic()
        rootfs = make_rootfs(work)
        debootstrap = time.monotonic() - started
        tool, tried, error = working_podman(work, rootfs)
        shutil.rmtree(rootfs, ignore_errors=True)
        if tool is None:
            pytest.skip(f"containers cannot run on this machine: {error}")
        tool.timings["debootstrap"] = debootstrap
        yield tool
    finally:
        for each in tried:
            remove_storage(each)
        shutil.rmtree(work, ignore_errors=True)


def remove_storage(podman: Podman) -> None:
    """Empty and remove the run's storage, and only it: `podman system reset` would also take
    the machine's podman networks, which live outside ``--root``."""
    for args in (("rm", "--all", "--force"), ("volume", "rm", "--all", "--force")):
        podman(*args, check=False, timeout=300)
    podman("rmi", "--all", "--force", check=False, timeout=300)
    # What the storage driver left mounted under the run's folder (deepest first).
    home = str(podman.home) + "/"
    mounted = [line.split()[1] for line in Path("/proc/self/mounts").read_text().splitlines()]
    for point in sorted((m for m in mounted if m.startswith(home)), reverse=True):
        subprocess.run(["umount", point], capture_output=True, check=False)
    shutil.rmtree(podman.home, ignore_errors=True)


@pytest.fixture(scope="module")
def image(podman: Podman) -> str:
    """The Dockerfile built on the Debian base, as a user would build it with podman."""
    started = time.monotonic()
    podman(
        "build",
        "--layers=false",  # one commit per stage: with vfs each layer is a full copy
        "--format",
        "docker",  # OCI images have no HEALTHCHECK
        "--pull=never",
        "--network",
        "host",  # apt and pip reach Debian's mirror and PyPI as this machine does
        *ulimits(),
        "--build-arg",
        f"BASE={BASE}",
        "--tag",
        IMAGE,
        "--file",
        str(ROOT / "Dockerfile"),
        str(ROOT),
        timeout=BUILD_TIMEOUT,
    )
    podman.timings["build"] = time.monotonic() - started
    return IMAGE


@pytest.fixture(scope="module")
def vault_volume(podman: Podman, image: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A named volume holding a vault made and filled by the image: `init`, then `import` of
    a sample archive mounted read-only."""
    archive = tmp_path_factory.mktemp("archive") / "archive"
    summary = write_sample_archive(archive, jobs=8, seed=18)
    # The archive's folder only: the container's user reads it, whoever made its parents.
    archive.chmod(0o755)
    podman("volume", "create", VOLUME)
    volume = f"{VOLUME}:/vault"
    started = time.monotonic()
    init = podman.run("--volume", volume, image, "init", "/vault")
    assert "Created a plain vault in /vault" in init.stdout + init.stderr
    imported = podman.run(
        "--volume", volume, "--volume", f"{archive}:/archive:ro", image, "import", "/archive"
    )
    assert f"{summary.jobs} jobs: {summary.jobs} new" in imported.stdout + imported.stderr
    podman.timings["init+import"] = time.monotonic() - started
    return VOLUME


def inspect_image(podman: Podman, image: str) -> dict[str, Any]:
    (config,) = json.loads(podman("image", "inspect", image).stdout)
    assert isinstance(config, dict)
    return config


def test_image_runs_mjvault_as_a_non_root_user(podman: Podman, image: str) -> None:
    version = podman.run(image, "--version")
    assert version.stdout.strip() == f"mjvault, version {__version__}"
    ids = podman.run("--entrypoint", "id", image)
    assert ids.stdout.split()[:2] == ["uid=10001(mjvault)", "gid=10001(mjvault)"]
    config = inspect_image(podman, image)["Config"]
    assert config["User"] == "10001:10001"
    assert "/vault" in config["Volumes"]
    assert "MJVAULT_VAULT=/vault" in config["Env"]
    assert config["Entrypoint"] == ["mjvault"]
    assert config["Cmd"] == ["sync", "--watch"]
    # podman's JSON leaves the healthcheck out of Config; its template reaches it.
    health = podman("image", "inspect", "--format", "{{json .Config.Healthcheck}}", image)
    assert json.loads(health.stdout)["Test"] == [
        "CMD",
        "mjvault",
        "--vault",
        "/vault",
        "log",
        "-n",
        "1",
    ]


def test_runtime_stage_carries_no_build_tools(podman: Podman, image: str) -> None:
    # Multi-stage: the wheel, pip's cache and the sources stay in the builder.
    found = podman.run(
        "--entrypoint",
        "sh",
        image,
        "-c",
        "ls /src /wheels 2>&1; command -v gcc; ls /opt/mjvault/bin/mjvault",
    )
    assert "cannot access '/src'" in found.stdout and "cannot access '/wheels'" in found.stdout
    assert found.stdout.strip().endswith("/opt/mjvault/bin/mjvault")
    assert "gcc" not in found.stdout


def test_init_import_verify_on_a_volume(podman: Podman, image: str, vault_volume: str) -> None:
    volume = f"{vault_volume}:/vault"
    started = time.monotonic()
    verify = podman.run("--volume", volume, image, "verify")
    assert "no problems found" in verify.stdout + verify.stderr
    podman.timings["verify"] = time.monotonic() - started
    log = podman.run("--volume", volume, image, "--json", "log", "-n", "1")
    (snapshot,) = json.loads(log.stdout)
    assert snapshot["stats"]["jobs"] == 8 and snapshot["source"] == "import:/archive"
    # The vault's files belong to the image's user, on the host as in the container.
    mountpoint = Path(
        podman("volume", "inspect", "--format", "{{.Mountpoint}}", vault_volume).stdout.strip()
    )
    owners = {path.stat().st_uid for path in mountpoint.rglob("*")}
    assert owners == {10001}


def test_healthchecks_pass_on_a_running_serve(
    podman: Podman, image: str, vault_volume: str, tmp_path: Path
) -> None:
    """`serve` as compose.yaml runs it (every address, the token from an env file, read-only)
    in a container of its own network: the image's healthcheck and compose's check pass, and
    compose's check fails with a wrong token."""
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())["services"]["serve"]
    env_file = tmp_path / "mjvault.env"
    env_file.touch(mode=0o600)
    env_file.write_text("MJVAULT_SERVE_TOKEN=test-serve-token-0123456789\n")
    name = "mjvault-test-serve"
    podman(
        "run",
        "--detach",
        "--name",
        name,
        "--network",
        "none",
        *ulimits(),
        "--env-file",
        str(env_file),
        "--volume",
        f"{vault_volume}:/vault",
        image,
        *compose["command"],
    )
    try:
        check = compose["healthcheck"]["test"]
        assert check[0] == "CMD"
        deadline = time.monotonic() + 60
        while True:
            done = podman("exec", name, *check[1:], check=False)
            if done.returncode == 0 or time.monotonic() > deadline:
                break
            time.sleep(1)
        assert done.returncode == 0, podman("logs", name, check=False).stderr
        health = podman("healthcheck", "run", name, check=False)
        assert health.returncode == 0, health.stdout + health.stderr
        wrong = podman("exec", "--env", "MJVAULT_SERVE_TOKEN=wrong", name, *check[1:], check=False)
        assert wrong.returncode != 0 and "401" in wrong.stderr
    finally:
        # SIGTERM, as compose stops it: serve ends by itself and the vault stays whole.
        podman("stop", "--time", "20", name, check=False, timeout=60)
        state = podman("inspect", "--format", "{{.State.ExitCode}}", name, check=False)
        podman("rm", "--force", name, check=False)
    assert state.stdout.strip() == "0"
    verify = podman.run("--volume", f"{vault_volume}:/vault", image, "verify")
    assert "no problems found" in verify.stdout + verify.stderr
    report = ", ".join(f"{k} {v:.0f} s" for k, v in podman.timings.items())
    print(f"\ncontainer test ({podman.driver}, {podman.runtime or 'crun'}): {report}")
