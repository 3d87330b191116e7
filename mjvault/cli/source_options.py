"""The Midjourney source options, defined once for every command that talks to Midjourney.

@click.command()
@midjourney_options
def sync(source: SourceOptions) -> None:
    with MidjourneyClient(source.settings()) as client: ...
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlsplit

import click

from mjvault.cli.context import AppContext
from mjvault.config import client_settings
from mjvault.errors import UsageError
from mjvault.sources.midjourney.auth import Credentials, resolve_credentials
from mjvault.sources.midjourney.settings import (
    API_CHOICES,
    ENV_TOKEN,
    ENV_USER_ID,
    ClientSettings,
    settings_values_from_env,
)

F = TypeVar("F", bound=Callable[..., Any])

_RATE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmg]?)(?:i?b)?(?:/s)?\s*$", re.IGNORECASE)


def parse_rate(text: str) -> float:
    """``500k``, ``2M``, ``1.5MB/s``, ``250000`` -> bytes per second (k = 1024)."""
    match = _RATE.match(text)
    if not match:
        raise UsageError(f"cannot read the rate {text!r}; use e.g. 500k or 2M (bytes per second)")
    factor = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}[match.group(2).lower()]
    rate = float(match.group(1)) * factor
    if rate <= 0:
        raise UsageError("the rate must be positive")
    return rate


@dataclass(frozen=True)
class SourceOptions:
    """What the user said on the command line about the Midjourney source (None = not said)."""

    web_base: str | None = None
    cdn_base: str | None = None
    api: str | None = None
    cookies_file: str | None = None
    cookies_from_browser: str | None = None
    user_agent: str | None = None
    user_id: str | None = None
    max_rps: float | None = None
    limit_rate: str | None = None

    def credentials(
        self,
        environ: Mapping[str, str] | None = None,
        *,
        use_keyring: bool = True,
        profile: str | None = None,
    ) -> Credentials:
        env = os.environ if environ is None else environ
        web_base = self.web_base or env.get("MJVAULT_WEB_BASE") or ""
        host = urlsplit(web_base).hostname or ""
        return resolve_credentials(
            environ=env,
            cookies_file=self.cookies_file,
            extra_hosts=[host] if host else [],
            use_keyring=use_keyring,
            profile=profile,
        )

    def config_overrides(self) -> dict[str, Any]:
        """These options as the command-line layer of the configuration (None = not given)."""
        return {
            "source.web_base": self.web_base,
            "source.cdn_base": self.cdn_base,
            "source.api": self.api,
            "source.cookies_file": self.cookies_file,
            "source.cookies_from_browser": self.cookies_from_browser,
            "source.user_agent": self.user_agent,
            "source.user_id": self.user_id,
            "sync.max_rps": self.max_rps,
            "sync.limit_rate": self.limit_rate,
        }

    def settings_for(self, app: AppContext, **overrides: Any) -> ClientSettings:
        """ClientSettings from the layered configuration, these options its top layer.

        Config files, profiles and MJVAULT_* variables reach the client this way; the
        environment names of the original scripts are part of the configuration's schema.
        """
        app.override(self.config_overrides())
        return client_settings(app.loaded_config, **overrides)

    def settings(
        self,
        environ: Mapping[str, str] | None = None,
        *,
        use_keyring: bool = True,
        profile: str | None = None,
        **overrides: Any,
    ) -> ClientSettings:
        """ClientSettings from: these options, then the environment, then ``profile``'s keyring
        entries."""
        env = os.environ if environ is None else environ
        values = settings_values_from_env(env)
        # Credentials are resolved as a whole (a cookies file beats the environment's token).
        values.pop("token", None)
        values.pop("user_id", None)
        given = {
            "web_base": self.web_base,
            "cdn_base": self.cdn_base,
            "api": self.api,
            "user_agent": self.user_agent,
            "user_id": self.user_id,
            "max_rps": self.max_rps,
            "limit_rate": parse_rate(self.limit_rate) if self.limit_rate else None,
        }
        values.update({k: v for k, v in given.items() if v is not None})
        values.update({k: v for k, v in overrides.items() if v is not None})
        settings = ClientSettings(**values)
        return self.credentials(env, use_keyring=use_keyring, profile=profile).apply(settings)


def midjourney_options(func: F) -> F:
    """Add the Midjourney source options; the command receives them as ``source``."""

    options = [
        click.option(
            "--web-base",
            metavar="URL",
            help="Midjourney web API base (default $MJVAULT_WEB_BASE, else www.midjourney.com).",
        ),
        click.option(
            "--cdn-base",
            metavar="URL",
            help="Image CDN base (default $MJVAULT_CDN_BASE, else cdn.midjourney.com).",
        ),
        click.option(
            "--api",
            type=click.Choice(API_CHOICES),
            help="Listing API generation (default auto: the first of v3, v2, v1 that answers).",
        ),
        click.option(
            "--cookies",
            "cookies_file",
            metavar="FILE",
            type=click.Path(dir_okay=False),
            help="Netscape cookies.txt exported from a signed-in browser (session, cf_clearance).",
        ),
        click.option(
            "--cookies-from-browser",
            "cookies_from_browser",
            metavar="BROWSER[:PROFILE]",
            help="Read the Midjourney cookies from this browser's profile at each run: chrome, "
            "chromium, edge, brave or firefox; PROFILE a profile name or directory.",
        ),
        click.option(
            "--user-agent",
            metavar="UA",
            help="User-Agent to send; with cf_clearance it must be your browser's exact one "
            "(default $MJVAULT_USER_AGENT, else a current desktop Chrome).",
        ),
        click.option(
            "--user-id",
            metavar="UUID",
            help=f"Midjourney user id (default ${ENV_USER_ID}, else the keyring).",
        ),
        click.option(
            "--max-rps",
            type=float,
            metavar="N",
            help="At most N requests per second (default 2).",
        ),
        click.option(
            "--limit-rate",
            metavar="RATE",
            help="Download at most RATE bytes per second in all, e.g. 500k or 2M.",
        ),
    ]

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        kwargs["source"] = SourceOptions(
            **{name: kwargs.pop(name) for name in SourceOptions.__dataclass_fields__}
        )
        return func(*args, **kwargs)

    decorated: Any = wrapper
    for option in reversed(options):
        decorated = option(decorated)
    return decorated


TOKEN_HELP = (
    f"The token is never read from the command line; set ${ENV_TOKEN}, pass --cookies FILE, "
    "or store it with `mjvault auth login`."
)
