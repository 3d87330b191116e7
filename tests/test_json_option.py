"""One way to take ``--json``, and the sync command's options listed once."""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Iterator
from pathlib import Path

import click
import pytest

from mjvault.cli.context import _set_json
from mjvault.cli.root import cli, run
from mjvault.cli.source_options import midjourney_options
from mjvault.cli.sync import SyncArgs, sync_command


def _commands(group: click.Group, ctx: click.Context) -> Iterator[click.Command]:
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        assert command is not None, name
        yield command
        if isinstance(command, click.Group):
            yield from _commands(command, ctx)


def _json_options(command: click.Command) -> list[click.Parameter]:
    return [p for p in command.params if "--json" in getattr(p, "opts", ())]


def test_every_json_flag_is_the_one_option() -> None:
    """Each ``--json`` sets the context's json_output (so a failure is a JSON error too)
    rather than being a flag of its own that only its command reads."""
    ctx = click.Context(cli)
    commands = list(_commands(cli, ctx))
    assert len(commands) > 50
    # every command takes it after its name, not only those whose module declared it
    assert [c.name for c in commands if not _json_options(c)] == []
    for command in [cli, *commands]:
        (option,) = _json_options(command)
        assert option.callback is _set_json, command.name
        assert not option.expose_value, command.name


def _run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    capsys.readouterr()
    try:
        run(args)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    else:  # pragma: no cover - run always exits
        code = 0
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture
def no_vault(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    for key in list(os.environ):
        if key.startswith("MJVAULT_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    yield tmp_path


@pytest.mark.parametrize(
    "args",
    [
        ["search", "cat", "--json"],
        ["stats", "--json"],
        ["similar", "--prompt", "a cat", "--json"],
        ["dupes", "--json"],
    ],
)
def test_a_command_json_flag_fails_as_json(
    args: list[str], no_vault: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`mjvault search --json` failing says so as `mjvault --json search` does: one JSON
    object on stdout besides the line on stderr (these flags used to skip it)."""
    code, out, err = _run(args, capsys)
    assert code == 10
    assert "no vault" in err
    assert json.loads(out)["error"]["type"] == "VaultNotFound"
    root_code, root_out, _ = _run(["--json", *args[:-1]], capsys)
    assert (root_code, root_out) == (code, out)


@pytest.mark.parametrize(
    "args",
    [
        ["verify", "--json"],
        ["thumbs", "--size", "s", "--json"],
        ["remote", "list", "--json"],
    ],
)
def test_json_after_any_command_name_is_the_roots(
    args: list[str], no_vault: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = _run(args, capsys)
    assert code == 10 and json.loads(out)["error"]["type"] == "VaultNotFound"


@pytest.mark.parametrize(
    "args", [["config", "show", "--bogus", "--json"], ["collection", "list", "--json", "--bogus"]]
)
def test_a_usage_error_before_a_late_json_is_json_too(
    args: list[str], no_vault: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = _run(args, capsys)
    assert code == 2 and "--bogus" in err
    assert json.loads(out)["error"]["type"] == "UsageError"


def test_sync_args_are_the_sync_options() -> None:
    """SyncArgs is built from what click parsed: its fields are the command's own options
    (the source's go to SourceOptions), with click's defaults."""

    @midjourney_options
    def bare(source: object) -> None:
        pass

    source_names = {p.name for p in click.command()(bare).params}
    own = {p.name: p for p in sync_command.params if p.expose_value and p.name not in source_names}
    fields = {f.name: f for f in dataclasses.fields(SyncArgs)}
    assert set(own) == set(fields)
    parsed = sync_command.make_context("sync", []).params
    for name in own:
        default = parsed[name]
        assert fields[name].default == default, name


def test_sync_refuses_bad_combinations_before_work(
    no_vault: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = _run(["sync", "--every", "10m"], capsys)
    assert (code, err.strip()) == (2, "mjvault: error: --every goes with --watch")
    code, _, err = _run(["sync", "--dry-run", "--watch"], capsys)
    assert code == 2 and "--dry-run changes nothing" in err
