"""``mjvault similar`` and ``mjvault dupes``: nearest images and near-duplicate groups."""

from __future__ import annotations

import json
import shutil
from typing import TYPE_CHECKING, Any

import click

from mjvault.cli.context import AppContext, json_option, pass_app
from mjvault.cli.query_args import QueryCommand, query_text
from mjvault.errors import UsageError

if TYPE_CHECKING:
    from mjvault.similarity.groups import Group
    from mjvault.similarity.nearest import Hit
    from mjvault.similarity.prompts import PromptHit
    from mjvault.similarity.semantic import SemanticHit
    from mjvault.vault import Vault

SIMILAR_EPILOG = """\b
The distance is the number of bits two images' perceptual hashes differ in
(0: the same picture; see `mjvault dupes --help` for the named levels).
With --semantic the score is the cosine of two images' vectors from the model
`mjvault embed` ran (1: the same); with --prompt, how near two prompts read
(0-100, after their parameters are set aside).
\b
Examples:
  mjvault similar 3f2a1b9c              the images nearest to that job's first image
  mjvault similar 3f2a1b9c:2 -n 5       nearest to its third image, five of them
  mjvault similar ~/Downloads/pic.webp  nearest to a file (it need not be in the vault)
  mjvault similar 3f2a1b9c --semantic   nearest by meaning (needs `mjvault embed`)
  mjvault similar --prompt "a lighthouse in a storm, oil painting"
  mjvault similar 3f2a1b9c --json
"""


@click.command("similar", epilog=SIMILAR_EPILOG)
@click.argument("target", metavar="JOB_ID[:INDEX] | IMAGE_FILE", required=False)
@click.option(
    "-n", "--limit", type=click.IntRange(min=1), default=20, show_default=True, help="At most N."
)
@click.option(
    "--semantic",
    is_flag=True,
    help="By the vectors of `mjvault embed`'s model instead of the perceptual hash.",
)
@click.option(
    "--prompt",
    "prompt",
    default=None,
    metavar="TEXT",
    help="The jobs whose prompts read nearest to TEXT (prompt families), instead of images.",
)
@json_option(help="The images (or jobs) as JSON.")
@pass_app
def similar_command(
    app: AppContext,
    target: str | None,
    limit: int,
    semantic: bool,
    prompt: str | None,
) -> None:
    """The images nearest to an image (by perceptual hash or meaning), or the jobs nearest a prompt."""
    if prompt is not None:
        if target is not None or semantic:
            raise UsageError("--prompt compares prompts: it takes no image and no --semantic")
        _similar_prompts(app, prompt, limit, as_json=app.json_output)
        return
    if target is None:
        raise UsageError("similar needs JOB_ID[:INDEX] or an image file (or --prompt TEXT)")
    if semantic:
        _similar_semantic(app, target, limit, as_json=app.json_output)
        return
    from mjvault.similarity.nearest import similar_to

    vault = app.open_vault()
    hits = similar_to(vault, target, limit)
    if app.json_output:
        click.echo(
            json.dumps({"target": target, "images": [_hit_json(vault, h) for h in hits]}, indent=2)
        )
        return
    for line in _hit_lines(vault, [(f"{h.distance:>3}", h.job_id, h.index) for h in hits]):
        click.echo(line)
    if not hits:
        app.info("no images with hashes in the vault")


def _similar_semantic(app: AppContext, target: str, limit: int, *, as_json: bool) -> None:
    from mjvault.similarity.semantic import semantic_similar

    vault = app.open_vault()
    hits = semantic_similar(vault, target, limit, settings=app.config.embed)
    if as_json:
        images = [_hit_json(vault, h) for h in hits]
        click.echo(json.dumps({"target": target, "semantic": True, "images": images}, indent=2))
        return
    for line in _hit_lines(vault, [(f"{h.score:.3f}", h.job_id, h.index) for h in hits]):
        click.echo(line)
    if not hits:
        app.info("no image vectors in the vault: run `mjvault embed --model PATH.onnx` first")


def _similar_prompts(app: AppContext, text: str, limit: int, *, as_json: bool) -> None:
    from mjvault.similarity.prompts import similar_prompts

    if not text.strip():
        raise UsageError("--prompt needs words to compare")
    vault = app.open_vault()
    hits = similar_prompts(vault, text, limit)
    if as_json:
        jobs = [_hit_json(vault, h) for h in hits]
        click.echo(json.dumps({"prompt": text, "jobs": jobs}, indent=2, ensure_ascii=False))
        return
    for line in _hit_lines(vault, [(f"{h.score:>5.1f}", h.job_id, None) for h in hits]):
        click.echo(line)
    if not hits:
        app.info("no prompt near that one")


def _hit_json(vault: Vault, hit: Hit | SemanticHit | PromptHit) -> dict[str, Any]:
    summary = vault.current_index().get(hit.job_id)
    extra: dict[str, Any] = {}
    if summary is not None:
        extra = {"time": summary.time.isoformat() if summary.time else None}
        extra["prompt"] = summary.prompt
    return hit.to_json() | extra


def _hit_lines(vault: Vault, hits: list[tuple[str, str, int | None]]) -> list[str]:
    """(measure, job id, image index) as lines: the measure, job id, index, date and the
    prompt cut to the terminal's width."""
    width = shutil.get_terminal_size((100, 24)).columns
    summaries = vault.current_index().get_many(job_id for _, job_id, _ in hits)
    lines = []
    for measure, job_id, index in hits:
        summary = summaries.get(job_id)
        date = summary.time.strftime("%Y-%m-%d") if summary and summary.time else "-" * 10
        at = "" if index is None else f"  {index}"
        head = f"{measure}  {job_id}{at}  {date}  "
        prompt = " ".join((summary.prompt if summary else "").split())
        room = max(10, width - len(head))
        lines.append(head + (prompt if len(prompt) <= room else prompt[: room - 1] + "…"))
    return lines


DUPES_EPILOG = """\b
Levels: the most bits two hashes of a group's images may differ in.
  {levels}
  or a number of bits, 0-{most}. Default: {default}.
\b
The best original of each group is marked *: the most pixels, then an upscale
over a grid's tile, then PNG over WebP over JPEG. Nothing is deleted: make a
view of the groups (--view) and decide there.
\b
Examples:
  mjvault dupes                          every group at the default level
  mjvault dupes --level very-high        only the closest copies
  mjvault dupes since:2024 --json        groups among this year's jobs
  mjvault dupes --view dupes             a collection and a checked-out view of them
"""


class _DupesCommand(QueryCommand):
    def format_epilog(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        from mjvault.similarity.hashing import DEFAULT_LEVEL, LEVELS, MAX_LEVEL

        levels = ", ".join(f"{name} ({value})" for name, value in LEVELS.items())
        self.epilog = DUPES_EPILOG.format(levels=levels, default=DEFAULT_LEVEL, most=MAX_LEVEL)
        super().format_epilog(ctx, formatter)


@click.command("dupes", cls=_DupesCommand)
@click.argument("query", nargs=-1)
@click.option("--level", default=None, metavar="NAME|N", help="How near: a level name or bits.")
@json_option(help="The groups as JSON.")
@click.option(
    "--view",
    "view",
    metavar="NAME",
    default=None,
    help="Make collection NAME of the groups' jobs and a checked-out view NAME of it.",
)
@click.option("--replace", is_flag=True, help="With --view: replace a view of that name.")
@pass_app
def dupes_command(
    app: AppContext,
    query: tuple[str, ...],
    level: str | None,
    view: str | None,
    replace: bool,
) -> None:
    """Groups of near-duplicate images, the best original of each marked (nothing deleted)."""
    from mjvault.similarity.groups import find_groups, group_json_with_jobs
    from mjvault.similarity.hashing import DEFAULT_LEVEL, LEVELS, parse_level
    from mjvault.similarity.store import HashStore

    distance = parse_level(level if level is not None else DEFAULT_LEVEL)
    text = query_text(query) or None
    vault = app.open_vault()
    with app.progress(None, "comparing hashes", unit="step") as bar:
        seen = 0

        def progress(done: int, total: int) -> None:
            nonlocal seen
            bar.total = total
            bar.update(done - seen)
            seen = done

        groups = list(find_groups(vault, level=distance, query=text, progress=progress))
    made = _make_view(app, vault, view, groups, replace=replace) if view else None
    if app.json_output:
        # The shape of GET /api/dupes (docs/api.md), every group included.
        with HashStore.open(vault) as store:
            hashed = len(store)
        doc: dict[str, Any] = {
            "level": distance,
            "levels": LEVELS,
            "default_level": DEFAULT_LEVEL,
            "query": text or "",
            "hashed": hashed,
            "total": len(groups),
            "images": sum(len(g.members) for g in groups),
        }
        if made is not None:
            doc["view"] = made
        doc["groups"] = [group_json_with_jobs(vault, g) for g in groups]
        click.echo(json.dumps(doc, indent=2))
        return
    for n, group in enumerate(groups, 1):
        click.echo(f"group {n}: {len(group.members)} images, within {group.distance} bits")
        for member in group.members:
            mark = "*" if member is group.best else " "
            size = f"{member.pixels / 1e6:.1f} MP" if member.pixels else "? MP"
            what = f"tile {member.tile} of a grid" if member.tile else ""
            what = what or ("upscale" if member.upscaled else "grid/tile")
            click.echo(
                f"  {mark} {member.job_id}:{member.index}  {member.kind or '?':4}  {size:>8}  "
                f"{what:9}  d={member.distance}"
            )
    images = sum(len(g.members) for g in groups)
    app.info(
        f"{len(groups)} group{'s' if len(groups) != 1 else ''} of near-duplicates "
        f"({images} images, level {distance})"
        + (f"; view {made['name']} in {made['directory']}" if made else "")
    )


def _make_view(
    app: AppContext, vault: Vault, name: str, groups: list[Group], *, replace: bool
) -> dict[str, Any]:
    """A collection of the groups' jobs and a view over it: the web app's "view of a
    selection" (mjvault.serve.batch.make_selection_view), its refusals as one line."""
    from mjvault.collections import check_name as check_collection
    from mjvault.serve.batch import Selection, _Answer, make_selection_view, views_folder
    from mjvault.views.registry import check_name as check_view

    check_view(name)
    check_collection(name)
    if not groups:
        raise UsageError("no near-duplicates found: no view made")
    job_ids = tuple(dict.fromkeys(m.job_id for g in groups for m in g.members))
    try:
        return make_selection_view(
            vault, name, Selection(ids=job_ids), views_folder(vault.path), replace=replace
        )
    except _Answer as refused:
        message = json.loads(bytes(refused.response.body)).get("error", "refused")
        hint = " (--replace to replace it)" if "replace it" in message else ""
        raise UsageError(message.split(":")[0] + hint) from None
