"""``mjvault log``, ``show`` and ``cat``: read what a vault holds."""

from __future__ import annotations

import json
import sys

import click

from mjvault.cli.context import AppContext, pass_app
from mjvault.errors import UsageError
from mjvault.store.objects import is_object_id


@click.command("log")
@click.option("-n", "--limit", type=int, default=None, help="Show at most N snapshots.")
@pass_app
def log_command(app: AppContext, limit: int | None) -> None:
    """List snapshots, newest first, with their job and image counts."""
    vault = app.open_vault()
    current = vault.head()  # a damaged HEAD stops here, pointing at `verify --repair`
    head = current.id if current else None
    snapshots = vault.snapshots()[:limit] if limit else vault.snapshots()

    def human() -> None:
        if not snapshots:
            click.echo("no snapshots yet")
        for s in snapshots:
            mark = " (HEAD)" if s.id == head else ""
            st = s.stats
            click.echo(
                f"{s.short_id}{mark}  {s.time.astimezone().strftime('%Y-%m-%d %H:%M:%S')}  "
                f"{st.get('jobs', 0)} jobs, {st.get('images', 0)} images  "
                f"+{st.get('added', 0)} ~{st.get('updated', 0)} -{st.get('removed', 0)}  {s.source}"
            )

    app.emit([s.to_json() | {"head": s.id == head} for s in snapshots], human)


@click.command("show")
@click.argument("job_id")
@click.option("--raw", is_flag=True, help="Print the record exactly as its source gave it.")
@click.option(
    "--snapshot", default=None, metavar="ID", help="Look in this snapshot (default HEAD)."
)
@pass_app
def show_command(app: AppContext, job_id: str, raw: bool, snapshot: str | None) -> None:
    """Show one job: its prompt, parameters and images (JOB_ID may be a unique prefix)."""
    vault = app.open_vault()
    entry = vault.entry(job_id, snapshot) if snapshot else vault.find_job(job_id)
    record = vault.record_json(entry)
    if raw:
        sys.stdout.buffer.write(record)
        if not record.endswith(b"\n"):
            sys.stdout.buffer.write(b"\n")
        return
    job = vault.job(entry)
    images = [
        {
            "index": i,
            "object": oid,
            "path": str(vault.object_path(oid)) if oid and not vault.encrypted else None,
        }
        for i, oid in enumerate(entry.images)
    ]
    data = {
        "id": job.id,
        "time": job.enqueue_time.isoformat() if job.enqueue_time else None,
        "type": job.type,
        "job_type": job.job_type,
        "prompt": job.prompt,
        "full_command": job.full_command,
        "params": job.params,
        "size": [job.width, job.height],
        "parent": job.parent_id,
        "username": job.username,
        "record": entry.record,
        "images": images,
    }

    def human() -> None:
        click.echo(f"job      {job.id}")
        click.echo(f"time     {data['time'] or 'unknown'}")
        click.echo(f"type     {job.type}" + (f" ({job.job_type})" if job.job_type else ""))
        click.echo(f"prompt   {job.prompt}")
        if job.params:
            click.echo("params   " + " ".join(f"--{k} {v}" for k, v in job.params.items()))
        for image in images:
            where = image["path"] or image["object"] or "missing"
            click.echo(f"image {image['index']}  {where}")

    app.emit(data, human)


@click.command("cat")
@click.argument("object_id")
@pass_app
def cat_command(app: AppContext, object_id: str) -> None:
    """Print an object's plaintext (verified) to stdout; records and manifests as JSON."""
    if not is_object_id(object_id.lower()):
        raise UsageError("OBJECT_ID must be 64 hex digits")
    vault = app.open_vault()
    data = vault.read_object(object_id.lower())
    decoded = _describe(data)
    if decoded is not None and sys.stdout.isatty():
        click.echo(json.dumps(decoded, indent=2, ensure_ascii=False, default=_bytes_hex))
        return
    sys.stdout.buffer.write(data)


def _describe(data: bytes) -> object | None:
    """Metadata objects are msgpack maps with a type tag; show those readably on a terminal."""
    import msgpack

    try:
        doc = msgpack.unpackb(data)
    except Exception:
        return None
    return doc if isinstance(doc, dict) and "t" in doc else None


def _bytes_hex(value: object) -> str:
    """Object ids (32 bytes) as hex, embedded JSON records as text."""
    if isinstance(value, bytes):
        if len(value) == 32:
            return value.hex()
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            return value.hex()
    return str(value)
