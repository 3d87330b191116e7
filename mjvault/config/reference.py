"""docs/configuration.md, rendered from the schema so the two cannot drift apart.

`scripts/gen_config_docs.py` writes it; a test fails when the committed file differs.
"""

from __future__ import annotations

from mjvault.config.schema import SECTIONS, SETTINGS, Setting

INTRO = """\
# Configuration reference

<!-- Generated from mjvault/config/schema.py by scripts/gen_config_docs.py; do not edit. -->

mjvault reads its settings in layers; a later layer wins over an earlier one:

1. built-in defaults (below);
2. the system file `/etc/mjvault/config.toml` (`MJVAULT_SYSTEM_CONFIG` names another);
3. your user file: `~/.config/mjvault/config.toml` on Linux, `~/Library/Application Support/mjvault/config.toml`
   on macOS, `%LOCALAPPDATA%\\mjvault\\config.toml` on Windows (`MJVAULT_CONFIG` names another);
4. the vault's own `config.toml`, inside the vault directory;
5. environment variables (`MJVAULT_<SECTION>_<KEY>`, and the older names listed below);
6. command-line options.

`mjvault config show` prints every effective value and the layer, file or variable it came
from; `mjvault config path` lists the files. Change them with `mjvault config set KEY VALUE
[--user|--vault]`, `config unset`, or `config edit` (opens `$EDITOR` and refuses to save a file
with mistakes). Files are TOML:

```toml
[sync]
jobs = 8
limit_rate = "2M"

[source]
user_id = "48d7667d-4177-49e2-adc1-5674bdde9593"

# mjvault --profile work …  (or MJVAULT_PROFILE=work)
[profile.work.vault]
path = "~/mj-vault-work"

[profile.work.source]
user_id = "0b6c4d8e-1f2a-4c3d-9e8f-7a6b5c4d3e2f"
```

## Profiles

A `[profile.NAME]` section holds the same sections as the file itself and overrides them when
the profile is chosen with `--profile NAME` or `MJVAULT_PROFILE`. Each file is read as its own
keys with its profile section laid over them, so a profile in your user file beats your user
file but not the vault's own config. Choosing a profile that no file defines is an error, except
in `mjvault setup` and `mjvault config set`, which create it. A
profile that sets `vault.path` picks that vault even inside another vault's directory, so one
account's jobs never land in another account's vault by accident.

## Checks

Unknown sections and keys, values of the wrong TOML type (`jobs = "8"`) and values out of
range are errors naming the file, the key and the closest known key (exit code 2). Relative
paths in a file are taken from that file's directory; in a variable or an option, from the
current directory.

## Secrets

`source.session_token` and `source.extra_cookies` are secrets: `config show` and `config get`
mask them, logs never carry them, `config set` does not take them on the command line (pass
`-` and type or pipe the value), and a file that holds one must be readable by its owner only
(`chmod 600`), else it is refused. A vault's `config.toml` cannot hold them at all. The
recommended home of the token is the system keyring (`pip install 'mjvault[keyring]'`, then
`mjvault setup`); on a server, the environment (`MIDJOURNEY_SESSION_TOKEN`, e.g. from a
systemd `EnvironmentFile=` readable by root only).

Settings marked *personal* cannot be set in a vault's `config.toml`.
"""


def _code(text: str) -> str:
    return f"`{text}`" if "`" not in text else f"`` {text} ``"


def _default(spec: Setting) -> str:
    if spec.secret or spec.default is None or spec.default == {}:
        return "unset"
    return _code(spec.type.to_text(spec.default))


def render_setting(spec: Setting) -> str:
    notes = []
    if spec.secret:
        notes.append("secret")
    elif not spec.vault_scope:
        notes.append("personal")
    title = f"### `{spec.key}`" + (f" ({', '.join(notes)})" if notes else "")
    rows = [
        title,
        "",
        spec.doc,
        "",
        f"- type: {spec.type.description}",
        f"- default: {_default(spec)}",
        "- environment: " + ", ".join(f"`{name}`" for name in spec.env),
    ]
    if spec.key == "source.extra_cookies":
        rows.append("- also: `MJVAULT_CF_CLEARANCE` sets the `cf_clearance` cookie alone")
    return "\n".join(rows) + "\n"


def render_reference() -> str:
    parts = [INTRO]
    for section in SECTIONS:
        parts.append(f"\n## [{section}]\n")
        for spec in SETTINGS.values():
            if spec.section == section:
                parts.append("\n" + render_setting(spec))
    return "".join(parts)
