"""`mjvault auth`: store, check and forget the Midjourney session. Never prints the token."""

from __future__ import annotations

import sys

import click

from mjvault import credentials
from mjvault.cli.context import AppContext, json_option, pass_app
from mjvault.cli.source_options import TOKEN_HELP, SourceOptions, midjourney_options
from mjvault.errors import Interrupted, SourceError, UsageError
from mjvault.sources.midjourney.client import AuthStatus, MidjourneyClient
from mjvault.sources.midjourney.settings import Secret


@click.group("auth", epilog=TOKEN_HELP)
def auth_group() -> None:
    """Manage the Midjourney session used by `mjvault sync`."""


def _read_secret_line(prompt: str) -> str:
    """A prompt without echo on a terminal; one line of stdin otherwise (for scripts)."""
    if sys.stdin.isatty():
        value: str = click.prompt(prompt, hide_input=True, err=True)
        return value.strip()
    return sys.stdin.readline().strip()


def _report(app: AppContext, status: AuthStatus) -> None:
    """Print the status; a failed one also ends the command with its one-line error."""
    if status.ok:
        app.emit(
            status.to_json(),
            lambda: click.echo(f"ok: signed in as user {status.user_id} ({status.message})"),
        )
        return
    if app.json_output:
        app.emit(status.to_json())
    raise SourceError(status.message)


@auth_group.command("login")
@midjourney_options
@click.option("--no-check", is_flag=True, help="Store without checking the session first.")
@click.option(
    "--browser",
    "use_browser",
    is_flag=True,
    help="Sign in in a window of the system's Chromium/Chrome and take the cookie it receives.",
)
@click.option(
    "--browser-path",
    metavar="PATH",
    help="The browser to open with --browser (default: the first Chromium, Chrome, Edge or "
    "Brave found).",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=1),
    default=300.0,
    show_default=True,
    metavar="SECONDS",
    help="How long --browser waits for the sign-in.",
)
# For tests and headless machines: no window, and a query string added to the sign-in URL.
@click.option("--headless", is_flag=True, hidden=True)
@click.option("--signin-query", default="", hidden=True)
@pass_app
def login_command(
    app: AppContext,
    source: SourceOptions,
    no_check: bool,
    use_browser: bool,
    browser_path: str | None,
    timeout: float,
    headless: bool,
    signin_query: str,
) -> None:
    """Ask for the session token and user id (without echo) and keep them in the keyring.

    The token is the value of the `__Host-Midjourney.AuthUserTokenV3_i` cookie (or, for older
    accounts, `__Secure-next-auth.session-token`) from your browser: Developer tools ->
    Application -> Cookies -> midjourney.com. With --browser, sign in in the window that
    opens instead: the cookie is taken from it, and the window's profile removed afterwards.
    """
    if use_browser:
        token, user_id = _sign_in_with_browser(
            app, source, browser_path, timeout, headless, signin_query
        )
    else:
        token = _read_secret_line("Midjourney session token")
        if not token:
            raise UsageError("no token given")
        user_id = source.user_id or _read_secret_line("Midjourney user id")
    if not user_id:
        raise UsageError("no user id given")
    _check_and_store(app, source, Secret(token), user_id, check=not no_check)


def _sign_in_with_browser(
    app: AppContext,
    source: SourceOptions,
    browser_path: str | None,
    timeout: float,
    headless: bool,
    signin_query: str,
) -> tuple[str, str | None]:
    from mjvault.sources.midjourney.browser_login import (
        check_installed,
        find_browser,
        login_in_browser,
    )

    # Only the web base: reading credentials here could fail on the ones being replaced.
    app.override(source.config_overrides())
    web_base = app.loaded_config.config.source.web_base
    check_installed()  # before asking the user to sign in in a window that would not open
    executable = find_browser(browser_path)
    if app.verbosity >= 0 and not app.json_output:
        click.echo(f"sign in to Midjourney in the browser window ({executable})...", err=True)
    try:
        session = login_in_browser(
            web_base,
            executable=executable,
            timeout=timeout,
            headless=headless,
            signin_query=signin_query,
        )
    except KeyboardInterrupt:
        # Ctrl-C, SIGTERM, SIGHUP: no vault was written, so the usual "rerun to resume"
        # would not fit.
        raise Interrupted("interrupted: the sign-in was stopped; nothing was stored") from None
    user_id = source.user_id or session.user_id
    if not user_id:
        user_id = _read_secret_line("Midjourney user id")
    return session.token.reveal(), user_id


def _of_profile(profile: str | None) -> str:
    return f" (profile {profile})" if profile else ""


def _check_and_store(
    app: AppContext, source: SourceOptions, token: Secret, user_id: str, *, check: bool
) -> None:
    """Check the session with one listing request (unless told not to), then keep it.

    Both ways of signing in (a pasted token, `--browser`) end here, so both store for the
    profile chosen.
    """
    if check:
        settings = source.settings_for(app, token=token, user_id=user_id)
        with MidjourneyClient(settings) as client:
            status = client.check_auth()
        if not status.ok:
            _report(app, status)
    profile = app.profile_name()
    credentials.store(profile, token.reveal(), user_id)
    app.emit(
        {"stored": True, "user_id": user_id},
        lambda: click.echo(
            f"stored the Midjourney session of user {user_id} in the keyring" + _of_profile(profile)
        ),
    )


@auth_group.command("status")
@midjourney_options
@json_option
@pass_app
def status_command(app: AppContext, source: SourceOptions) -> None:
    """Check the session with one listing request. Exit status 1 when it does not work."""
    with MidjourneyClient(source.settings_for(app)) as client:
        status = client.check_auth()
    _report(app, status)


@auth_group.command("logout")
@pass_app
def logout_command(app: AppContext) -> None:
    """Forget the session stored in the keyring (the profile's, with --profile)."""
    profile = app.profile_name()
    removed = credentials.delete(profile)
    app.emit(
        {"removed": removed},
        lambda: click.echo(
            ("removed the stored Midjourney session" if removed else "no stored session to remove")
            + _of_profile(profile)
        ),
    )
