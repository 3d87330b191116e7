"""``--anonymize``: output that says nothing of who made the jobs or whose images they quote.

What goes: user ids and usernames (the record keys that hold them, at any depth), and
image-prompt URLs — every URL in a prompt, a full command, a parameter value (``--sref``,
``--cref`` …) or any other string of a record (``event.seedImageURL``, image prompt lists).
What stays: ``image_paths``, which name the job's own outputs on the CDN by job id (the
record needs them to find its images), and everything else a record says, such as times,
parameters and sizes. A prompt without a URL is left exactly as it was.

Snapshot sources (``midjourney:v3:<user id>``, ``import:/home/<name>/…``) keep only their
kind, and hosts go, wherever an anonymized output lists snapshots.
"""

from __future__ import annotations

import json
import re
from typing import Any

# A URL with a scheme (as Discord and the web app write image prompts, in <> or not), and
# Midjourney's short links, which are often pasted without one.
_URL = re.compile(r"<?\b[a-z][a-z0-9+.-]*://[^\s>]*>?|\bs\.mj\.run/\S*", re.IGNORECASE)
_SPACES = re.compile(r"[ \t]{2,}")
# Keys naming a person, compared without case, "_" or "-": user_id, userId, username, ….
USER_KEYS = frozenset(
    {
        "userid",
        "username",
        "user",
        "usertag",
        "displayname",
        "discorduserid",
        "discordusername",
        "author",
        "authorid",
        "owner",
        "ownerid",
        "email",
    }
)
#: Record keys whose URLs are the job's own outputs, not image prompts.
OWN_OUTPUT_KEYS = frozenset({"image_paths"})


def scrub(text: str) -> str:
    """``text`` without URLs; unchanged when it has none."""
    if "://" not in text and "s.mj.run" not in text.lower():
        return text
    return _SPACES.sub(" ", _URL.sub("", text)).strip()


def _user_key(key: str) -> bool:
    return key.lower().replace("_", "").replace("-", "") in USER_KEYS


def scrub_params(params: dict[str, Any]) -> dict[str, Any]:
    """Parameters with URLs taken out of their values; one left with nothing is dropped."""
    out: dict[str, Any] = {}
    for name, value in params.items():
        if isinstance(value, str):
            clean = scrub(value)
            if clean or not value:
                out[name] = clean
        elif isinstance(value, list):
            items = [scrub(v) if isinstance(v, str) else v for v in value]
            if kept := [v for v in items if v != ""]:
                out[name] = kept
        else:
            out[name] = value
    return out


def scrub_json(value: Any) -> Any:
    """A decoded record with user keys dropped and URLs taken out of every string."""
    if isinstance(value, dict):
        return {
            k: (v if k in OWN_OUTPUT_KEYS else scrub_json(v))
            for k, v in value.items()
            if not _user_key(k)
        }
    if isinstance(value, list):
        return [scrub_json(v) for v in value]
    if isinstance(value, str):
        return scrub(value)
    return value


def anonymize_record(raw: bytes) -> bytes:
    """A record's JSON, anonymized (re-encoded: not the stored bytes any more)."""
    try:
        record = json.loads(raw)
    except ValueError:
        return b"{}"  # nothing of a record that is not JSON can be vouched for
    return json.dumps(scrub_json(record), ensure_ascii=False).encode("utf-8")


def anonymize_row(row: dict[str, Any]) -> dict[str, Any]:
    """An export row (:func:`mjvault.find.export.job_rows`) anonymized.

    View paths go too: a view's template may hold ``{username}`` or the prompt."""
    return row | {
        "username": None,
        "prompt": scrub(row["prompt"]) if row.get("prompt") else row.get("prompt"),
        "full_command": scrub(row["full_command"]) if row.get("full_command") else None,
        "params": scrub_params(row.get("params") or {}),
        "view_paths": [],
    }


def source_kind(source: str) -> str:
    """``midjourney:v3:<user id>`` -> ``midjourney``; ``import:/home/ann/mj`` -> ``import``."""
    return source.split(":", 1)[0]
