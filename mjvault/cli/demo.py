"""``mjvault demo``: a real sync from the bundled Midjourney-compatible server, no account needed."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import TYPE_CHECKING

import click

from mjvault.cli.context import AppContext, pass_app

if TYPE_CHECKING:  # the demo pulls in the test server: imported only when the command runs
    from mjvault.demo import DemoJob

# What to try next, shown only for the commands this installation has.
NEXT_STEPS: list[tuple[str, str, str]] = [
    ("log", "log", "the snapshot this sync wrote"),
    ("show", "show {job}", "one job: prompt, parameters, image files"),
    ("show", "show --raw {job}", "its record exactly as the server sent it"),
    ("search", "search {word}", "find jobs by prompt words, type, parameters, dates"),
    ("checkout", "checkout ./mj-pictures", "browse the images as ordinary files"),
    ("verify", "verify --read-data", "rehash every object"),
    ("sync", "sync --help", "sync your own account (needs MIDJOURNEY_SESSION_TOKEN)"),
]


@click.command(
    "demo",
    epilog="""\b
Examples:
  mjvault demo                      sync a generated account into ./mjvault-demo
  mjvault demo /tmp/try --jobs 200  a bigger one elsewhere
  mjvault demo                      again: nothing new, nothing downloaded
""",
)
@click.argument("directory", required=False, type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--jobs",
    "job_count",
    type=click.IntRange(1, 20_000),
    default=60,
    show_default=True,
    help="Jobs in the generated account.",
)
@click.option("--seed", type=int, default=21, show_default=True, help="Which generated account.")
@pass_app
def demo_command(app: AppContext, directory: Path | None, job_count: int, seed: int) -> None:
    """Try `mjvault sync` offline: serve a generated Midjourney account on 127.0.0.1 and sync
    it into a vault (default ./mjvault-demo, created or reused). No account, no network."""
    from mjvault.demo import DEFAULT_DEMO_DIR, run_demo

    path = directory or DEFAULT_DEMO_DIR
    app.info(f"serving a generated account of {job_count} jobs on 127.0.0.1; syncing into {path}")
    with (
        app.progress(None, "jobs", unit="job") as jobs_bar,
        app.progress(None, "download", unit="B") as bytes_bar,
    ):
        bytes_bar.unit_scale = True
        result = run_demo(
            path,
            jobs=job_count,
            seed=seed,
            open_vault=app.open_vault,
            on_job=lambda _job_id: jobs_bar.update(1),
            on_bytes=bytes_bar.update,
        )

    def human() -> None:
        report = result.report
        shown = str(path) if path.is_absolute() or str(path).startswith(".") else f"./{path}"
        vault_arg = shlex.quote(shown)
        click.echo(
            f"{'Created' if result.created else 'Reused'} the vault {result.vault.resolve()}"
        )
        click.echo(
            f"Synced: {report.jobs_new} new jobs, {report.jobs_updated} updated, "
            f"{report.jobs_unchanged} unchanged; {report.images_downloaded} files downloaded "
            f"({report.videos_downloaded} videos), {report.images_deduplicated} deduplicated, "
            f"{report.bytes_downloaded / 1e6:.1f} MB in {report.seconds:.1f} s"
        )
        from mjvault.find.results import cut, table_prompt

        click.echo(f"The vault holds {result.jobs_in_vault} jobs. The newest:")
        for sample in result.samples:
            prompt = cut(table_prompt(sample.prompt), 70)
            click.echo(f"  {sample.id}  {sample.time or '?'}  {sample.type or '?'}")
            click.echo(f"      {prompt}")
            if sample.files:
                more = f" (+{len(sample.files) - 1} more)" if len(sample.files) > 1 else ""
                click.echo(f"      {sample.files[0]}{more}")
        click.echo(
            f"Images and videos are files under {result.vault / 'objects'}, named by their "
            "BLAKE3 hash; records, trees and snapshots sit beside them."
        )
        from mjvault.cli.invocation import activate_hint, program

        mjvault = program()
        click.echo("Try next:")
        root_ctx = click.get_current_context().find_root()
        root = root_ctx.command
        # list_commands, not .commands: the root group loads command modules on demand.
        available = set(root.list_commands(root_ctx)) if isinstance(root, click.Group) else set()
        job = result.samples[0].id[:8] if result.samples else "JOB_ID"  # a unique prefix will do
        word = _a_prompt_word(result.samples)
        for command, template, why in NEXT_STEPS:
            if command in available:
                line = f"{mjvault} --vault {vault_arg} " + template.format(job=job, word=word)
                click.echo(f"  {line:<70}  {why}")
        hint = activate_hint()
        if hint:
            click.echo(f"(or `{hint}` first, then type plain `mjvault`)")

    app.emit(result.to_json(), human)


def _a_prompt_word(samples: list[DemoJob]) -> str:
    for sample in samples:
        for word in sample.prompt.split():
            if word.isalpha() and len(word) >= 5:
                return word.lower()
    return "fox"
