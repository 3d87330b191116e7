"""``mjvault remote``, ``push``, ``pull`` and ``clone``: offsite copies of a vault."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from mjvault.cli.context import AppContext, pass_app
from mjvault.cli.path_args import NonEmptyPath
from mjvault.errors import EXIT_PARTIAL, ExitStatus, UsageError

THREADS_HELP = "Requests in flight at once."


def s3_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Options for object-store URLs (which go with which scheme: remotes/config.py OPTIONS);
    credentials only ever come from the provider's environment variables."""
    fn = click.option(
        "--virtual-hosted",
        is_flag=True,
        help="s3:// only: bucket.host style URLs (default: path style, as MinIO-like "
        "servers want).",
    )(fn)
    fn = click.option(
        "--allow-http",
        is_flag=True,
        help="Allow a plain-HTTP endpoint (local MinIO, moto, Azurite).",
    )(fn)
    fn = click.option("--region", metavar="REGION", help="s3:// only: region (else $AWS_REGION).")(
        fn
    )
    fn = click.option(
        "--endpoint-url",
        metavar="URL",
        help="The service's endpoint: an S3-compatible server (else $AWS_ENDPOINT_URL), an "
        "Azure account URL or Azurite's http://host:port/account, a GCS base URL.",
    )(fn)
    return fn


@click.group(
    "remote",
    epilog="""\b
Examples:
  mjvault remote add nas /mnt/nas/mj-vault
  mjvault remote add b2 s3://my-bucket/mj --endpoint-url https://s3.eu-central-003.backblazeb2.com
  mjvault remote add cloud s3://my-bucket/mj --encrypt     plain vault, sealed remote
  mjvault remote add azure az://my-container/mj            $AZURE_STORAGE_ACCOUNT_NAME/_KEY
  mjvault remote add gcs gs://my-bucket/mj                 $GOOGLE_APPLICATION_CREDENTIALS
  mjvault remote list
  mjvault remote info nas                                  objects, bytes, last push
""",
)
def remote_group() -> None:
    """Named offsite copies: folders (drives, NAS) and S3-compatible object stores.

    Azure Blob containers (az://) and Google Cloud Storage buckets (gs://) too.
    Credentials come from the environment and are never stored in the vault: S3 from
    AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN), Azure from
    AZURE_STORAGE_ACCOUNT_NAME / AZURE_STORAGE_ACCOUNT_KEY (or AZURE_STORAGE_SAS_TOKEN),
    GCS from GOOGLE_APPLICATION_CREDENTIALS (a service-account file).
    """


@remote_group.command(
    "add",
    epilog="""\b
Examples:
  mjvault remote add nas /mnt/nas/mj-vault
  mjvault remote add b2 s3://my-bucket/mj --endpoint-url https://s3.eu-central-003.backblazeb2.com
  mjvault remote add azure az://my-container/mj
      (AZURE_STORAGE_ACCOUNT_NAME and AZURE_STORAGE_ACCOUNT_KEY in the environment)
  mjvault remote add local az://my-container/mj --endpoint-url http://127.0.0.1:10000/devstoreaccount1
      (Azurite, the Azure emulator)
  mjvault remote add gcs gs://my-bucket/mj
      (GOOGLE_APPLICATION_CREDENTIALS names a service-account JSON file)
""",
)
@click.argument("name")
@click.argument("url")
@click.option(
    "--encrypt",
    is_flag=True,
    help="Plain vault only: seal and rename every object with the remote's own key "
    "(asks for a new passphrase).",
)
@click.option(
    "--auto-push",
    is_flag=True,
    help="Push to this remote after every sync that stored something (`remote set` changes it).",
)
@s3_options
@pass_app
def remote_add_command(
    app: AppContext,
    name: str,
    url: str,
    encrypt: bool,
    auto_push: bool,
    endpoint_url: str | None,
    region: str | None,
    allow_http: bool,
    virtual_hosted: bool,
) -> None:
    """Add remote NAME at URL (a folder, file://…, s3://bucket/prefix, az://container/prefix
    or gs://bucket/prefix) and set it up."""
    from mjvault.cli.passphrase import passphrase_source
    from mjvault.remotes.config import RemoteSpec, check_spec
    from mjvault.remotes.session import add_remote

    spec = check_spec(
        RemoteSpec(
            name,
            url,
            encrypt=encrypt,
            endpoint_url=endpoint_url,
            region=region,
            allow_http=allow_http,
            virtual_hosted=virtual_hosted,
            auto_push=auto_push,
        )
    )
    vault = app.open_vault()
    info = add_remote(vault, spec, passphrase=passphrase_source(app.passphrase_file, confirm=True))
    app.emit(
        {"name": spec.name, "url": spec.url, "encrypted": info.encrypted, "remote_id": info.id},
        lambda: click.echo(
            f"added remote {spec.name} -> {spec.url}{' (encrypted)' if info.encrypted else ''}"
        ),
    )


@remote_group.command("list")
@pass_app
def remote_list_command(app: AppContext) -> None:
    """The vault's remotes."""
    from mjvault.errors import ConfigError
    from mjvault.remotes.config import load_spec, remote_names

    vault_path = app.vault_path()
    # A remote that no longer loads is listed with why, not hidden: it can then be removed.
    entries: list[dict[str, Any]] = []
    for name in remote_names(vault_path):
        try:
            entries.append(load_spec(vault_path, name).to_json())
        except ConfigError as exc:
            entries.append({"name": name, "invalid": exc.message})

    def human() -> None:
        for e in entries:
            if "invalid" in e:
                click.echo(f"{e['name']}\t(invalid: {e['invalid']})")
            else:
                marks = ("  (encrypting)" if e["encrypt"] else "") + (
                    "  (auto-push)" if e["auto_push"] else ""
                )
                click.echo(f"{e['name']}\t{e['url']}{marks}")

    app.emit(entries, human)


@remote_group.command(
    "info",
    epilog="""\b
Examples:
  mjvault remote info nas
  mjvault --json remote info cloud
""",
)
@click.argument("name")
@pass_app
def remote_info_command(app: AppContext, name: str) -> None:
    """What remote NAME holds: objects, packs, snapshots and bytes, counted from one listing
    (no object is read, no passphrase asked), and this vault's last push to it."""
    from mjvault.remotes.config import load_spec, open_backend
    from mjvault.remotes.survey import survey

    vault = app.open_vault()
    spec = load_spec(vault.path, name)
    local = set(vault.refs.snapshot_ids())
    backend = open_backend(spec)
    try:
        app.info(f"listing {backend.describe()}")
        with app.progress(None, "listing", unit="keys") as bar:
            found = survey(spec, backend, vault.path, local, progress=bar.update)
    finally:
        backend.close()

    def human() -> None:
        enc = found.encryption
        if found.remote_id is None:
            click.echo(f"{name}\t{spec.url}  (holds no mjvault remote)")
        else:
            how = "plain"
            if enc is not None:
                how = f"encrypted ({enc.get('cipher')}, " + (
                    "encrypting remote of a plain vault)"
                    if found.clone_as == "plain"
                    else "an encrypted vault's keys)"
                )
            click.echo(f"{name}\t{spec.url}")
            click.echo(f"  remote {found.remote_id}, format version {found.version}, {how}")
        for kind in ("objects", "packs", "snapshots", "keys"):
            tally = found.kinds[kind]
            click.echo(f"  {kind + ':':<11}{tally.count:>10}  {tally.bytes / 1e6:12.1f} MB")
        total = found.total
        click.echo(f"  {'total:':<11}{total.count:>10}  {total.bytes / 1e6:12.1f} MB")
        last = found.last_push
        if last is None:
            click.echo("  last push: none recorded by this vault")
        else:
            click.echo(
                f"  last push: {last.get('time')}, {last.get('objects_sent')} objects, "
                f"{(last.get('bytes_sent') or 0) / 1e6:.1f} MB sent"
            )
        if found.local_snapshots_held is not None:
            click.echo(
                f"  holds {found.local_snapshots_held} of this vault's "
                f"{found.local_snapshots} snapshots (as of {found.seen})"
            )
        if found.forgotten_pending:
            click.echo(
                f"  may still hold {found.forgotten_pending} forgotten jobs: "
                f"`mjvault gc --remote {name}` removes them"
            )

    app.emit(found.to_json(), human)


@remote_group.command(
    "set",
    epilog="""\b
Examples:
  mjvault remote set nas --auto-push       push to nas after every sync that stored something
  mjvault remote set nas --no-auto-push
""",
)
@click.argument("name")
@click.option(
    "--auto-push/--no-auto-push",
    "auto_push",
    default=None,
    help="Push to this remote after every sync that stored something (one-shot or --watch).",
)
@pass_app
def remote_set_command(app: AppContext, name: str, auto_push: bool | None) -> None:
    """Change a stored option of remote NAME."""
    from dataclasses import replace

    from mjvault.remotes.config import load_spec, save_spec

    if auto_push is None:
        raise UsageError("nothing to change", hint="give --auto-push or --no-auto-push")
    vault_path = app.vault_path()
    spec = replace(load_spec(vault_path, name), auto_push=auto_push)
    save_spec(vault_path, spec)
    app.emit(
        spec.to_json(),
        lambda: click.echo(f"remote {name}: auto-push {'on' if auto_push else 'off'}"),
    )


@remote_group.command("remove")
@click.argument("name")
@pass_app
def remote_remove_command(app: AppContext, name: str) -> None:
    """Forget remote NAME (its data on the remote is left untouched)."""
    from mjvault.remotes.config import delete_spec

    delete_spec(app.vault_path(), name)
    app.emit({"removed": name}, lambda: click.echo(f"removed remote {name}"))


@click.command(
    "push",
    epilog="""\b
Examples:
  mjvault push nas            send what the remote lacks; rerun to resume
  mjvault --json push cloud   a summary for scripts
  mjvault push --full nas     resend what `verify --remote nas` found missing
  mjvault push --wait 30m nas wait for a prune of the remote to finish first
""",
)
@click.argument("name")
@click.option(
    "--threads", type=click.IntRange(1, 64), default=8, show_default=True, help=THREADS_HELP
)
@click.option(
    "--full",
    is_flag=True,
    help="Walk every snapshot, even published ones, and resend objects missing on the remote.",
)
@click.option(
    "--wait",
    "wait_for",
    default="0s",
    show_default=True,
    metavar="DURATION",
    help="While another machine prunes the remote, wait up to this long (90s, 30m, 2h) "
    "before giving up.",
)
@pass_app
def push_command(app: AppContext, name: str, threads: int, full: bool, wait_for: str) -> None:
    """Upload to remote NAME every object and snapshot it lacks.

    Snapshots appear on the remote only after all they reference has arrived. An
    interrupted push resumes where it stopped when run again.
    """
    from mjvault.cli.passphrase import passphrase_source
    from mjvault.durations import parse_duration
    from mjvault.notify import Notifier, PushIncomplete, push_failures_notified
    from mjvault.remotes.config import load_spec
    from mjvault.remotes.push import push
    from mjvault.remotes.session import connect

    prune_wait = parse_duration(wait_for)
    vault = app.open_vault()
    spec = load_spec(vault.path, name)
    notifier = Notifier.from_config(app.config)
    with (
        push_failures_notified(notifier, name, vault=str(vault.path)),
        connect(vault, spec, passphrase=passphrase_source(app.passphrase_file)) as link,
    ):
        app.info(f"pushing to {link.backend.describe()}")
        with app.progress(None, "uploading", unit="B") as bar:

            def planned(objects: int, size: int) -> None:
                bar.total = size
                bar.refresh()

            report = push(
                vault,
                link,
                threads=threads,
                progress=bar.update,
                on_plan=planned,
                full=full,
                prune_wait=prune_wait,
                on_wait=app.info,
            )

    def human() -> None:
        if report.ok and not report.objects_sent and not report.snapshots_sent:
            click.echo(f"up to date: the remote holds all {report.snapshots_present} snapshots")
            return
        mb = report.bytes_sent / 1e6
        rate = mb / report.seconds if report.seconds else 0.0
        click.echo(
            f"sent {report.objects_sent} objects ({mb:.1f} MB, {rate:.1f} MB/s), "
            f"{report.objects_skipped} already there; {report.snapshots_sent} snapshots published"
        )
        for problem in report.problems:
            click.echo(f"  problem: {problem}", err=True)

    app.emit(report.to_json(), human)
    if not report.ok:
        notifier.push_failed(name, PushIncomplete(report.problems), vault=str(vault.path))
        raise ExitStatus(EXIT_PARTIAL)


@click.command("pull")
@click.argument("name")
@click.option(
    "--threads", type=click.IntRange(1, 64), default=8, show_default=True, help=THREADS_HELP
)
@click.option(
    "--repair",
    is_flag=True,
    help="Instead: re-check every local object (verify --read-data) and replace the missing "
    "or damaged ones with the remote's copies.",
)
@pass_app
def pull_command(app: AppContext, name: str, threads: int, repair: bool) -> None:
    """Fetch from remote NAME the snapshots and objects this vault lacks.

    HEAD moves to the newest fetched snapshot when that one descends from it.
    """
    if repair:
        _repair(app, name)
        return
    from mjvault.cli.passphrase import passphrase_source
    from mjvault.remotes.config import load_spec
    from mjvault.remotes.pull import pull
    from mjvault.remotes.session import connect

    vault = app.open_vault()
    spec = load_spec(vault.path, name)
    with (
        connect(vault, spec, passphrase=passphrase_source(app.passphrase_file)) as link,
        app.progress(None, "downloading", unit="B") as bar,
    ):
        report = pull(vault, link, threads=threads, progress=bar.update)
    _report_pull(app, report)


@click.command(
    "clone",
    epilog="""\b
Examples:
  mjvault clone /mnt/nas/mj-vault ~/mj-vault
  mjvault clone s3://my-bucket/mj ~/mj-vault --passphrase-file ~/.mj-pass
""",
)
@click.argument("url")
@click.argument("directory", type=NonEmptyPath(file_okay=False))
@s3_options
@click.option(
    "--passphrase-file",
    "clone_passphrase_file",
    type=click.Path(dir_okay=False),
    help="Passphrase of an encrypted remote (else $MJVAULT_PASSPHRASE, else a prompt).",
)
@click.option(
    "--threads", type=click.IntRange(1, 64), default=8, show_default=True, help=THREADS_HELP
)
@pass_app
def clone_command(
    app: AppContext,
    url: str,
    directory: str,
    endpoint_url: str | None,
    region: str | None,
    allow_http: bool,
    virtual_hosted: bool,
    clone_passphrase_file: str | None,
    threads: int,
) -> None:
    """Make DIRECTORY a complete vault from the remote at URL alone (index included).

    The remote becomes the new vault's `origin`. Run the same command again to finish
    an interrupted clone.
    """
    from mjvault.cli.passphrase import passphrase_source
    from mjvault.remotes.clone import clone
    from mjvault.remotes.config import RemoteSpec, check_spec

    spec = check_spec(
        RemoteSpec(
            "origin",
            url,
            endpoint_url=endpoint_url,
            region=region,
            allow_http=allow_http,
            virtual_hosted=virtual_hosted,
        )
    )
    source = passphrase_source(clone_passphrase_file or app.passphrase_file)
    with app.progress(None, "downloading", unit="B") as bar:
        vault, report = clone(
            spec, directory, passphrase=source, threads=threads, progress=bar.update
        )
    vault.close()
    _report_pull(app, report, cloned=directory)


def _repair(app: AppContext, name: str) -> None:
    from mjvault.cli.passphrase import passphrase_source
    from mjvault.remotes.config import load_spec
    from mjvault.remotes.repair import repair_from_remote
    from mjvault.remotes.session import connect

    vault = app.open_vault()
    spec = load_spec(vault.path, name)
    with (
        connect(vault, spec, passphrase=passphrase_source(app.passphrase_file)) as link,
        app.progress(None, "checking local objects", unit="B") as bar,
    ):
        report = repair_from_remote(vault, link, on_object=bar.update)
    unavailable = [a.object_id for a in report.unrepaired]

    def human() -> None:
        click.echo(
            f"{len(report.actions)} damaged or missing objects, {len(report.repaired)} repaired"
        )
        for object_id in unavailable:
            click.echo(f"  not on the remote either: {object_id}", err=True)
        if report.index_rebuilt:
            click.echo("index rebuilt")
        for note in report.notes:
            click.echo(f"  note: {note}", err=True)
        for problem in report.remaining:
            click.echo(f"  still a problem: {problem.kind}: {problem.message}", err=True)

    full = report.to_json()
    app.emit(
        {
            "ok": report.ok,
            "repaired": [a.object_id for a in report.repaired],
            "unavailable": unavailable,
            "found": len(report.actions),
            "index_rebuilt": report.index_rebuilt,
            "remaining_problems": full["remaining_problems"],
            "notes": report.notes,
            "packs_quarantined": full["packs_quarantined"],
        },
        human,
    )
    if not report.ok:
        raise ExitStatus(EXIT_PARTIAL)


def _report_pull(app: AppContext, report: Any, cloned: str | None = None) -> None:
    data = report.to_json() | ({"vault": cloned} if cloned else {})

    def human() -> None:
        mb = report.bytes_received / 1e6
        click.echo(
            f"received {report.objects_received} objects ({mb:.1f} MB), "
            f"{report.snapshots_received} snapshots"
        )
        if report.head:
            click.echo(f"HEAD {report.head[:12]}{' (moved)' if report.head_moved else ''}")
        if report.diverged:
            click.echo(
                "the remote's newest snapshot does not descend from this vault's HEAD; "
                "HEAD was kept (both histories are in the vault)",
                err=True,
            )
        if cloned:
            click.echo(f"vault ready at {cloned}")
        for problem in report.problems:
            click.echo(f"  problem: {problem}", err=True)

    app.emit(data, human)
    if not report.ok:
        raise ExitStatus(EXIT_PARTIAL)
