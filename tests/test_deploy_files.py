"""The files that deploy mjvault elsewhere: the Dockerfile, compose.yaml and the Kubernetes
CronJob in docs/. Read as a deployer's tools would (YAML parsed, the command lines parsed by
the real CLI), without building or running anything: tests/test_container.py does that."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import click
import pytest
import yaml
from config_helpers import run_cli as run_in_process

from mjvault.cli.root import cli

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "Dockerfile"
COMPOSE = ROOT / "compose.yaml"
CRONJOB = ROOT / "docs" / "kubernetes-cronjob.yaml"

# Names whose value must come from an env file or a Secret, never from the file itself.
SECRET_NAMES = re.compile(r"TOKEN|PASSPHRASE|SECRET|PASSWORD|CLEARANCE|COOKIE", re.IGNORECASE)


def parse_command_line(argv: list[str]) -> list[str]:
    """Parse ``mjvault ARGV`` with the real CLI, down to the command, without running it.

    Returns the command path (``["mjvault", "sync"]``). An unknown command or option, or a
    bad value, raises click's usage error, as the program would print it."""
    ctx = cli.make_context("mjvault", list(argv))
    with ctx:
        # Where click leaves the command and its arguments (Group.invoke reads the same).
        rest = [*ctx._protected_args, *ctx.args]
        assert rest, f"no command in {argv}"
        name, command, args = cli.resolve_command(ctx, rest)
        assert command is not None and name is not None
        sub = command.make_context(name, list(args), parent=ctx)
        with sub:
            return sub.command_path.split()


def sync_option_missing(argv: list[str]) -> str | None:
    """The first `sync` option of ARGV this build does not have yet, if any: `--watch`,
    `--every` and `--if-idle` come with the watch loop, which may land after these files."""
    ctx = cli.make_context("mjvault", ["sync", "--help"], resilient_parsing=True)
    with ctx:
        sync = cli.get_command(ctx, "sync")
        assert sync is not None
        known = {opt for param in sync.params for opt in param.opts}
    return next(
        (arg for arg in argv if arg in {"--watch", "--every", "--if-idle"} and arg not in known),
        None,
    )


def check_mjvault_args(argv: list[str], command: str) -> None:
    missing = sync_option_missing(argv) if argv[:1] == ["sync"] else None
    if missing is not None:
        pytest.skip(f"`mjvault sync` has no {missing} in this build")
    assert parse_command_line(argv) == ["mjvault", command]


def test_parse_command_line_refuses_what_mjvault_refuses() -> None:
    # The check below is only worth something if a wrong command line fails it.
    assert parse_command_line(["verify"]) == ["mjvault", "verify"]
    with pytest.raises(click.UsageError):
        parse_command_line(["serve", "--no-such-option"])
    with pytest.raises(click.UsageError):
        parse_command_line(["no-such-command"])
    with pytest.raises(click.BadParameter):
        parse_command_line(["serve", "--port", "70000"])


# -- Dockerfile -------------------------------------------------------------------------------
def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order, continuation lines joined, comments left out."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    rows = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            rows.append((word.upper(), rest.strip()))
    return rows


def test_dockerfile_is_multi_stage_on_a_base_argument_and_runs_as_non_root() -> None:
    rows = dockerfile_instructions()
    # The base is an argument before the first FROM, so a build can bring its own.
    assert rows[0][0] == "ARG" and rows[0][1].startswith("BASE=")
    stages = [args for word, args in rows if word == "FROM"]
    assert stages == ["${BASE} AS builder", "${BASE} AS runtime"]
    runtime = rows[[i for i, (word, _) in enumerate(rows) if word == "FROM"][1] :]
    words = dict(runtime)
    assert words["USER"].split(":")[0] == "10001"
    assert words["VOLUME"] == "/vault"
    assert "MJVAULT_VAULT=/vault" in words["ENV"]
    assert ("COPY", "--from=builder /opt/mjvault /opt/mjvault") in runtime
    assert not any(SECRET_NAMES.search(args) for word, args in rows if word in {"ENV", "ARG"})


def test_dockerfile_entrypoint_healthcheck_and_command_are_real_command_lines() -> None:
    words = dict(dockerfile_instructions())
    assert yaml.safe_load(words["ENTRYPOINT"]) == ["mjvault"]
    health = words["HEALTHCHECK"]
    assert "CMD [" in health
    health_cmd = yaml.safe_load(health[health.index("CMD") + 3 :])
    assert health_cmd[0] == "mjvault"
    assert parse_command_line(health_cmd[1:]) == ["mjvault", "log"]
    check_mjvault_args(yaml.safe_load(words["CMD"]), "sync")


def test_healthcheck_passes_on_an_empty_vault_and_beside_a_sync(tmp_path: Path) -> None:
    """The image's healthcheck, run by the real CLI on a real vault: healthy from `init` on,
    and while a sync holds the write lock (a check that waited for the lock would mark a
    long sync unhealthy)."""
    from click.testing import CliRunner

    from mjvault.lock import WriteLock

    words = dict(dockerfile_instructions())
    health = words["HEALTHCHECK"]
    argv = yaml.safe_load(health[health.index("CMD") + 3 :])[1:]
    vault = tmp_path / "vault"
    argv = [str(vault) if arg == "/vault" else arg for arg in argv]
    runner = CliRunner()
    missing = runner.invoke(cli, argv)
    assert missing.exit_code != 0  # no vault yet: unhealthy
    assert runner.invoke(cli, ["init", str(vault)]).exit_code == 0
    assert runner.invoke(cli, argv).exit_code == 0
    with WriteLock(vault, "sync"):
        held = runner.invoke(cli, argv)
    assert held.exit_code == 0, held.output


def test_dockerignore_sends_only_the_package() -> None:
    lines = [
        line
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line and not line.startswith("#")
    ]
    assert lines[0] == "*"
    copied = set(re.findall(r"^COPY (?!--from)(.+) \S+$", DOCKERFILE.read_text(), re.MULTILINE))
    sources = {name for row in copied for name in row.split()}
    for name in sources:
        assert f"!{name}" in lines or f"!{name}/" in lines, name


# -- compose.yaml -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(loaded, dict)
    return loaded


def test_compose_runs_sync_and_serve_on_one_volume(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) == {"sync", "serve"}
    assert "vault" in compose["volumes"]
    for service in services.values():
        assert service["volumes"] == ["vault:/vault"]
        assert service["restart"] == "unless-stopped"
    assert services["sync"]["build"] == services["serve"]["build"] == "."
    assert services["serve"]["image"] == services["sync"]["image"]


def test_compose_commands_are_real_command_lines(compose: dict[str, Any]) -> None:
    serve = compose["services"]["serve"]
    assert parse_command_line(serve["command"]) == ["mjvault", "serve"]
    assert "--read-only" in serve["command"]
    # Published on the host's loopback only, at the port serve listens on in the container.
    port = serve["command"][serve["command"].index("--port") + 1]
    assert serve["ports"] == [f"127.0.0.1:8080:{port}"]
    sync = compose["services"]["sync"]["command"]
    assert sync[:2] == ["sync", "--watch"] and sync[sync.index("--every") + 1] == "6h"
    check_mjvault_args(sync, "sync")


def test_compose_keeps_secrets_in_an_env_file(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        assert service["env_file"] == ["mjvault.env"], name
        environment = service.get("environment") or {}
        names = (
            environment if isinstance(environment, dict) else [e.split("=")[0] for e in environment]
        )
        assert not [n for n in names if SECRET_NAMES.search(n)], name
    # The check reads the token from the environment the env file filled, not from itself.
    check = " ".join(compose["services"]["serve"]["healthcheck"]["test"])
    assert 'os.environ.get("MJVAULT_SERVE_TOKEN")' in check
    compile(compose["services"]["serve"]["healthcheck"]["test"][3], "healthcheck", "exec")


# -- the Kubernetes CronJob -------------------------------------------------------------------
@pytest.fixture(scope="module")
def cronjob_documents() -> list[dict[str, Any]]:
    documents = [doc for doc in yaml.safe_load_all(CRONJOB.read_text()) if doc]
    assert all(isinstance(doc, dict) for doc in documents)
    return documents


def test_cronjob_runs_one_sync_every_six_hours_never_two_at_once(
    cronjob_documents: list[dict[str, Any]],
) -> None:
    kinds = {(doc["apiVersion"], doc["kind"]): doc for doc in cronjob_documents}
    cronjob = kinds[("batch/v1", "CronJob")]
    spec = cronjob["spec"]
    assert spec["concurrencyPolicy"] == "Forbid"
    minute, hour, *rest = spec["schedule"].split()
    assert minute.isdigit() and hour == "*/6" and rest == ["*", "*", "*"]
    pod = spec["jobTemplate"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert "command" not in container  # the image's entrypoint, mjvault
    assert "--if-idle" in container["args"] and "--watch" not in container["args"]
    check_mjvault_args(container["args"], "sync")


def test_cronjob_vault_on_a_claim_and_token_from_a_secret(
    cronjob_documents: list[dict[str, Any]],
) -> None:
    kinds = {doc["kind"]: doc for doc in cronjob_documents}
    assert "Secret" not in kinds  # made by the user from a file, never shipped with a value
    claim = kinds["PersistentVolumeClaim"]["metadata"]["name"]
    pod = kinds["CronJob"]["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    assert volumes[mounts["/vault"]]["persistentVolumeClaim"]["claimName"] == claim
    env = {e["name"]: e for e in container["env"]}
    assert env["MIDJOURNEY_SESSION_TOKEN"]["valueFrom"]["secretKeyRef"]["key"]
    for name, entry in env.items():
        if SECRET_NAMES.search(name):
            assert "value" not in entry, name


def test_cronjob_is_non_root_read_only_and_bounded(
    cronjob_documents: list[dict[str, Any]],
) -> None:
    (cronjob,) = [doc for doc in cronjob_documents if doc["kind"] == "CronJob"]
    pod = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 10001  # the image's user
    (container,) = pod["containers"]
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    # A read-only root needs somewhere to write temporary files: /tmp, as the image's
    # XDG_CACHE_HOME and MPLCONFIGDIR expect.
    assert "/tmp" in {m["mountPath"] for m in container["volumeMounts"]}
    assert container["resources"]["requests"] and container["resources"]["limits"]["memory"]


def test_compose_healthcheck_without_the_token_is_one_line(compose: dict[str, Any]) -> None:
    """Run by the real Python with no MJVAULT_SERVE_TOKEN: a line saying so, exit 1."""
    check = compose["services"]["serve"]["healthcheck"]["test"]
    env = {k: v for k, v in os.environ.items() if k != "MJVAULT_SERVE_TOKEN"}
    result = subprocess.run(
        [sys.executable, *check[2:]], capture_output=True, text=True, env=env, timeout=30
    )
    assert result.returncode == 1
    assert result.stderr == "MJVAULT_SERVE_TOKEN is not set: put it in mjvault.env\n"


def test_serve_beyond_loopback_without_a_token_and_terminal_refuses(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """compose.yaml's serve with no MJVAULT_SERVE_TOKEN: stderr is `docker logs`, not a
    terminal, so serve makes no token to print there and stops with one line."""
    monkeypatch.delenv("MJVAULT_SERVE_TOKEN", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / ".config"))
    vault = tmp_path / "vault"
    assert run_in_process(capsys, "init", str(vault)).code == 0
    # The port is taken: were serve to go on and start, it would fail to bind, not hang.
    with socket.socket() as taken:
        taken.bind(("0.0.0.0", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        result = run_in_process(
            capsys, "--vault", str(vault), "serve", "--host", "0.0.0.0", "--port", port
        )
    assert result.code == 2
    lines = result.err.strip().splitlines()
    assert len(lines) == 1 and "set MJVAULT_SERVE_TOKEN" in lines[0]
    assert "shown once" not in result.err and "token=" not in result.err
