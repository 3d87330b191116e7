"""The one typed schema of mjvault's settings.

Every command reads a :class:`Config`; every setting is one dataclass field whose metadata says
how it is parsed, documented, named in the environment and whether it is a secret. The loader,
``config show``, the environment mapping and ``docs/configuration.md`` are all derived from here,
so a new setting is one field.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mjvault.config import types as t

DEFAULT_WEB_BASE = "https://www.midjourney.com"
DEFAULT_CDN_BASE = "https://cdn.midjourney.com"
# A current desktop Chrome: Cloudflare and the CDN turn away clients that do not look like a
# browser, and a `cf_clearance` cookie only works with the exact User-Agent it was issued to.
DEFAULT_USER_AGENT = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 "
    "(KHTML, like Gecko) Chrome/142.0.0.0 Safari/537.36"
)
DEFAULT_TEMPLATE = "{date:%Y/%Y-%m}/{prompt:60}_{job_id}_{index}.{ext}"
# The insights cost table's defaults (`[insights.cost]`, mjvault/insights/compute.py): GPU
# minutes of a job by type, factors by speed, model, quality, video and draft, and the price
# of a fast hour (Midjourney's extra fast hours, USD). Midjourney's own
# figures: about a minute of fast time a grid; video ~8x an image job; turbo uses fast time at
# twice the rate; relax time costs nothing on a subscription. An estimate, labelled as one.
DEFAULT_INSIGHTS_COST: dict[str, float] = {
    "price_per_fast_hour": 4.0,
    "minutes.default": 1.0,
    "minutes.grid": 1.0,
    "minutes.upscale": 1.0,
    "minutes.variation": 1.0,
    "speed.fast": 1.0,
    "speed.turbo": 2.0,
    "speed.relax": 0.0,
    "speed.unknown": 1.0,
    "quality.0.25": 0.25,
    "quality.0.5": 0.5,
    "quality.1": 1.0,
    "quality.2": 2.0,
    "quality.4": 4.0,
    "video": 8.0,
    "draft": 0.5,
}


def setting(
    default: Any,
    value_type: t.ValueType,
    doc: str,
    *,
    env: tuple[str, ...] = (),
    secret: bool = False,
    vault_scope: bool = True,
) -> Any:
    """One setting: a dataclass field carrying what the loader and the reference need.

    ``env`` lists extra environment names (older tools' names) after the canonical
    ``MJVAULT_<SECTION>_<NAME>``. ``vault_scope=False`` keeps a setting out of a vault's own
    ``config.toml``: secrets must not travel with a vault, and output manners belong to a person.
    """
    metadata = {
        "type": value_type,
        "doc": doc,
        "env": env,
        "secret": secret,
        "vault_scope": vault_scope and not secret,
    }
    if isinstance(default, Mapping):
        frozen = dict(default)
        return dataclasses.field(
            default_factory=lambda: dict(frozen), metadata=metadata, repr=not secret
        )
    return dataclasses.field(default=default, metadata=metadata, repr=not secret)


@dataclass(frozen=True)
class VaultSection:
    path: Path | None = setting(
        None,
        t.FilePath(),
        "The vault used when neither `--vault` nor `MJVAULT_VAULT` names one and the current "
        "directory is not inside a vault. Set in a profile, it wins over the current directory.",
        env=("MJVAULT_VAULT",),
        vault_scope=False,
    )


@dataclass(frozen=True)
class SourceSection:
    web_base: str = setting(
        DEFAULT_WEB_BASE, t.Url(), "Base URL of the Midjourney web API.", env=("MJVAULT_WEB_BASE",)
    )
    cdn_base: str = setting(
        DEFAULT_CDN_BASE, t.Url(), "Base URL of the image CDN.", env=("MJVAULT_CDN_BASE",)
    )
    cdn_hosts: tuple[str, ...] = setting(
        ("cdn.midjourney.com",),
        t.HostList(),
        "Hosts an image download may be redirected to (`host` or `host:port`), besides the "
        "host of `source.cdn_base`, which always may. A redirect anywhere else is refused.",
    )
    api: str = setting(
        "auto",
        t.Choice("auto", "v3", "v2", "v1"),
        "Listing generation of the web API; `auto` tries the newest first.",
        env=("MJVAULT_MIDJOURNEY_API",),
    )
    user_id: str | None = setting(
        None,
        t.Uuid(),
        "Your Midjourney user ID (the page's `__NEXT_DATA__` has it at "
        "`props.initialAuthUser.midjourney_id`).",
        env=("MIDJOURNEY_USER_ID",),
    )
    user_agent: str = setting(
        DEFAULT_USER_AGENT,
        t.Text(),
        "User-Agent sent with every request; must be your browser's exact one when you pass "
        "its `cf_clearance` cookie.",
        env=("MJVAULT_USER_AGENT",),
    )
    cookies_file: Path | None = setting(
        None,
        t.FilePath(),
        "A Netscape `cookies.txt` export of your browser's midjourney.com cookies.",
    )
    cookies_from_browser: str | None = setting(
        None,
        t.Text(),
        "Read the midjourney.com cookies from a local browser profile at every run: "
        "`BROWSER[+KEYRING][:PROFILE]` with BROWSER one of chrome, chromium, edge, brave, "
        "firefox and PROFILE a profile name or directory (needs `mjvault[browser]`).",
        env=("MJVAULT_COOKIES_FROM_BROWSER",),
    )
    extra_cookies: Mapping[str, str] = setting(
        {},
        t.CookieMap(),
        "Further cookies sent with every API request, such as `cf_clearance`. Secret: masked "
        "in output; allowed only in files no other user can read.",
        secret=True,
    )
    session_token: str | None = setting(
        None,
        t.Text(),
        "The session cookie's value. Secret: best kept in the system keyring (`mjvault setup`) "
        "or the environment; allowed only in files no other user can read.",
        env=("MIDJOURNEY_SESSION_TOKEN",),
        secret=True,
    )


@dataclass(frozen=True)
class SyncSection:
    jobs: int = setting(8, t.Integer(1, 64), "Downloads at once.")
    max_rps: float = setting(
        2.0, t.PositiveNumber(), "Requests per second at most, over all downloads."
    )
    limit_rate: int | None = setting(
        None, t.ByteRate(), "Download bandwidth cap; unset means no limit."
    )
    since: dt.date | None = setting(
        None, t.Date(), "Only sync jobs enqueued on or after this date."
    )
    max_page_bytes: int = setting(
        16 * 1024 * 1024,
        t.ByteSize(),
        "The largest listing page read, in bytes; a larger answer ends the sync with an error "
        "instead of filling memory. A real page of 1,000 jobs is 1-5 MB.",
    )
    checkpoint_seconds: float = setting(
        10.0,
        t.PositiveNumber(),
        "Seconds of downloading between two checkpoints: a killed sync loses at most about "
        "this much work. A checkpoint also falls due after 2,000 jobs or 256 MB of new files.",
    )
    every: str = setting(
        "10m",
        t.Duration(),
        "How often `sync --watch` looks for new jobs (30s, 10m, 6h, 1d). Each look reads the "
        "newest listing page; under a minute, mind the service's rate limits.",
    )


@dataclass(frozen=True)
class CheckoutSection:
    default_template: str = setting(
        DEFAULT_TEMPLATE, t.Text(), "Path template of a new checkout view."
    )
    link: str = setting(
        "auto",
        t.Choice("auto", "symlink", "hardlink", "reflink", "copy"),
        "How a view's files point at the vault; `auto` symlinks in a plain vault and copies "
        "from an encrypted one.",
    )


@dataclass(frozen=True)
class OutputSection:
    color: str = setting(
        "auto",
        t.Choice("auto", "always", "never"),
        "Coloured output; `auto` colours a terminal only. `NO_COLOR` and `--no-color` win.",
        vault_scope=False,
    )
    progress: str = setting(
        "auto",
        t.Choice("auto", "always", "never"),
        "Progress bars; `auto` shows them on a terminal only, never under `--json` or `-q`.",
        vault_scope=False,
    )


@dataclass(frozen=True)
class PackSection:
    auto_after: int = setting(
        32,
        t.Integer(0, 1_000_000),
        "How many small packs (under 4 MB, one per sync or import) may pile up before "
        "`sync`, `import` and `gc` merge them into larger ones; 0 leaves that to `mjvault pack`.",
    )


@dataclass(frozen=True)
class RetentionSection:
    keep_last: int | None = setting(
        None,
        t.Integer(1, 1_000_000),
        "After each sync, keep the N newest snapshots (as `forget --keep-last`). Retention is "
        "off while every `keep_*` is unset; a snapshot no rule keeps is forgotten, unless it is "
        "HEAD, a view's, or the last copy no remote holds.",
    )
    keep_hourly: int | None = setting(
        None,
        t.Integer(1, 1_000_000),
        "After each sync, keep the newest snapshot of each of the N most recent hours that have one.",
    )
    keep_daily: int | None = setting(
        None,
        t.Integer(1, 1_000_000),
        "After each sync, keep the newest snapshot of each of the N most recent days that have one.",
    )
    keep_weekly: int | None = setting(
        None,
        t.Integer(1, 1_000_000),
        "After each sync, keep the newest snapshot of each of the N most recent ISO weeks that have one.",
    )
    keep_monthly: int | None = setting(
        None,
        t.Integer(1, 1_000_000),
        "After each sync, keep the newest snapshot of each of the N most recent months that have one.",
    )
    keep_yearly: int | None = setting(
        None,
        t.Integer(1, 1_000_000),
        "After each sync, keep the newest snapshot of each of the N most recent years that have one.",
    )


@dataclass(frozen=True)
class InsightsSection:
    cost: dict[str, float] = setting(
        DEFAULT_INSIGHTS_COST,
        t.NumberTable(),
        "The table insights estimate cost by (always labelled an estimate): GPU minutes a job "
        "by type (`minutes.grid`, `minutes.default` for the rest), times factors by model "
        "(`model.v 7`, as `stats` names models; 1 when absent), quality (`quality.2`), "
        "`video` and `draft`; minutes times the speed mode's factor (`speed.fast`, "
        "`speed.turbo`, `speed.relax`, `speed.unknown` when the command names none) are fast "
        "minutes, priced at `price_per_fast_hour` (USD). Entries given replace the defaults "
        "one by one; sub-tables name entries by path (`[insights.cost.minutes] grid = 1`).",
    )
    timezone: str = setting(
        "",
        t.Text(allow_empty=True),
        "The time zone insights tell days, weeks, hours, streaks and sessions in (an IANA "
        "name, `Europe/Paris`); empty: the machine's (`TZ`, else /etc/localtime). Exact in "
        "any zone, DST and half-hour offsets included; monthly evolution and cost stay in "
        "UTC months.",
    )


@dataclass(frozen=True)
class ServeSection:
    host: str = setting(
        "127.0.0.1",
        t.Text(),
        "The address `mjvault serve` listens on. Any address but a loopback one needs the "
        "access token.",
    )
    port: int = setting(8765, t.Integer(1, 65535), "The port `mjvault serve` listens on.")
    access_token: str | None = setting(
        None,
        t.Text(),
        "The token a browser must show when `mjvault serve` listens beyond this machine "
        "(`Authorization: Bearer …`, or `?token=` once). Unset: one is made and shown at "
        "start. Never taken from the command line (argv is visible to every user).",
        env=("MJVAULT_SERVE_TOKEN",),
        secret=True,
    )
    views_dir: Path | None = setting(
        None,
        t.FilePath(),
        'Where the page\'s "Make a view" puts a view of a selection (one folder per view, '
        "named after it). Unset: `<vault's folder>-views` beside the vault.",
    )


@dataclass(frozen=True)
class EmbedSection:
    # Remembered by `mjvault embed` in the vault's config.toml, so `search --semantic` need
    # not repeat them (docs/design.md, "Embeddings (optional)").
    model: Path | None = setting(
        None,
        t.FilePath(),
        "The image model (ONNX) `mjvault embed` computes vectors with; set by `embed --model`.",
    )
    text_model: Path | None = setting(
        None,
        t.FilePath(),
        "The text model (ONNX) that turns `search --semantic` queries into vectors of the "
        "image model's space; set by `embed --text-model`.",
    )
    tokenizer: Path | None = setting(
        None,
        t.FilePath(),
        "The text model's `tokenizer.json`; unset: the one beside the text model.",
    )


@dataclass(frozen=True)
class NotifySection:
    urls: tuple[str, ...] = setting(
        (),
        t.UrlList(),
        "Where notifications go: Apprise URLs (`json://host/path`, `mailto://…`, "
        '`discord://…`, `ntfy://…`; docs/usage.md, "Notifications"), sent after a sync, on '
        "a failure, on `verify` problems and on a failed push. Secret (URLs carry tokens): "
        "masked in output; allowed only in files no other user can read. Needs "
        "`pip install 'mjvault[notify]'`.",
        secret=True,
    )
    only_on_failure: bool = setting(
        False,
        t.Boolean(),
        "Send only problems (a failure, images missing, `verify` problems, a failed push), "
        "never the news of a sync that went well.",
    )
    quiet_hours: str | None = setting(
        None,
        t.ClockRange(),
        "Local hours (`22:00-07:00`) in which only failures are sent; the news of a sync and "
        "warnings such as missing images are not sent then. Unset: no quiet hours.",
    )


@dataclass(frozen=True)
class Config:
    """The effective settings every command reads (``app.config``)."""

    vault: VaultSection = dataclasses.field(default_factory=VaultSection)
    source: SourceSection = dataclasses.field(default_factory=SourceSection)
    sync: SyncSection = dataclasses.field(default_factory=SyncSection)
    checkout: CheckoutSection = dataclasses.field(default_factory=CheckoutSection)
    output: OutputSection = dataclasses.field(default_factory=OutputSection)
    pack: PackSection = dataclasses.field(default_factory=PackSection)
    retention: RetentionSection = dataclasses.field(default_factory=RetentionSection)
    insights: InsightsSection = dataclasses.field(default_factory=InsightsSection)
    serve: ServeSection = dataclasses.field(default_factory=ServeSection)
    embed: EmbedSection = dataclasses.field(default_factory=EmbedSection)
    notify: NotifySection = dataclasses.field(default_factory=NotifySection)

    def get(self, key: str) -> Any:
        section, name = split_key(key)
        return getattr(getattr(self, section), name)


@dataclass(frozen=True)
class Setting:
    """What the schema says about one key, e.g. ``sync.jobs``."""

    section: str
    name: str
    type: t.ValueType
    default: Any
    doc: str
    env: tuple[str, ...]
    secret: bool
    vault_scope: bool

    @property
    def key(self) -> str:
        return f"{self.section}.{self.name}"


def split_key(key: str) -> tuple[str, str]:
    section, _, name = key.partition(".")
    return section, name


def _collect() -> dict[str, Setting]:
    defaults = Config()
    found: dict[str, Setting] = {}
    for section_field in dataclasses.fields(Config):
        section_defaults = getattr(defaults, section_field.name)
        for field in dataclasses.fields(section_defaults):
            meta = field.metadata
            canonical = f"MJVAULT_{section_field.name}_{field.name}".upper()
            found[f"{section_field.name}.{field.name}"] = Setting(
                section=section_field.name,
                name=field.name,
                type=meta["type"],
                default=getattr(section_defaults, field.name),
                doc=meta["doc"],
                env=(canonical, *meta["env"]),
                secret=meta["secret"],
                vault_scope=meta["vault_scope"],
            )
    return found


#: Every setting by dotted key, in schema order.
SETTINGS: dict[str, Setting] = _collect()
SECTIONS: tuple[str, ...] = tuple(dict.fromkeys(s.section for s in SETTINGS.values()))
SECRET_KEYS: frozenset[str] = frozenset(k for k, s in SETTINGS.items() if s.secret)


def build_config(values: Mapping[str, Any]) -> Config:
    """A Config from parsed values by dotted key; keys not given keep their defaults."""
    by_section: dict[str, dict[str, Any]] = {section: {} for section in SECTIONS}
    for key, value in values.items():
        section, name = split_key(key)
        by_section[section][name] = value
    defaults = Config()
    sections = {
        name: dataclasses.replace(getattr(defaults, name), **fields)
        for name, fields in by_section.items()
    }
    return Config(**sections)
