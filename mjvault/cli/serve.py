"""``mjvault serve``: the web app on 127.0.0.1 (or, with an access token, beyond)."""

from __future__ import annotations

import os
import sys

import click

from mjvault.cli.context import AppContext, pass_app
from mjvault.errors import UsageError


@click.command("serve")
@click.option("--host", default=None, help="Address to listen on (default 127.0.0.1).")
@click.option("--port", type=click.IntRange(0, 65535), default=None, help="Port (default 8765).")
@click.option("--open", "open_browser", is_flag=True, help="Open the page in a browser.")
@click.option("--read-only", is_flag=True, help="Refuse every change (sync, forget, export …).")
@pass_app
def serve_command(
    app: AppContext, host: str | None, port: int | None, open_browser: bool, read_only: bool
) -> None:
    """Run the web app on this machine: browse, search and manage the vault in a browser."""
    from mjvault.cli.passphrase import passphrase_source
    from mjvault.serve.app import create_app
    from mjvault.serve.app import run as run_server
    from mjvault.serve.security import new_token
    from mjvault.serve.settings import ServeSettings, is_loopback

    app.override({"serve.host": host, "serve.port": port})
    config = app.config.serve
    root = app.vault_path()
    token = config.access_token
    shown = None
    if not is_loopback(config.host):
        if not token:
            if not sys.stderr.isatty():
                # A token made here would be shown on stderr, which is a log file, a journal
                # or `docker logs` when it is not a terminal: a secret kept where others read.
                raise UsageError(
                    f"serve on {config.host} needs an access token and stderr is not a "
                    "terminal to show one on: set MJVAULT_SERVE_TOKEN (or serve.access_token)"
                )
            token = shown = new_token()
        click.echo(
            f"warning: listening on {config.host}, beyond this machine: every request needs "
            "the access token",
            err=True,
        )
    settings = ServeSettings(
        host=config.host,
        port=config.port,
        read_only=read_only,
        access_token=token,
        passphrase=passphrase_source(app.passphrase_file),
    )
    asgi = create_app(root, settings)
    shown_host = f"[{config.host}]" if ":" in config.host else config.host
    url = f"http://{shown_host}:{config.port}/"
    if shown is not None:
        # Shown once, here: it is in no file, and the link sets a cookie then drops it.
        click.echo(f"access token (shown once): {shown}", err=True)
        click.echo(f"open: {url}?token={shown}", err=True)
    else:
        click.echo(f"serving {root} at {url}" + (" (read-only)" if read_only else ""), err=True)
    if open_browser:
        import threading
        import webbrowser

        threading.Timer(0.5, webbrowser.open, (url,)).start()
    # uvicorn's own signal handling: Ctrl-C (SIGINT) or SIGTERM finish the requests in
    # flight, run the app's shutdown (the vault closed) and return; run_server tells the app
    # at once, so its event streams end rather than hold the grace period.
    run_server(
        asgi,
        host=config.host,
        port=config.port,
        log_level="warning",
        access_log=False,
        server_header=False,
        timeout_graceful_shutdown=5,
    )
    # Stopped, the app shut down (the vault closed). A request still running in a worker
    # thread after the grace period (a handler stuck on a slow disk) would keep the
    # interpreter waiting for it at exit: Ctrl-C must end the process.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
