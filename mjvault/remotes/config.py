"""Named remotes of a vault: ``<vault>/remotes/<name>.json`` (mode 0600, no credentials).

A remote is a URL plus the options needed to reach it. Credentials are never stored here: an
S3 remote takes them from the ``AWS_*`` environment each time, as the AWS tools do.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from mjvault.errors import ConfigError, MjvaultError
from mjvault.remotes.backend import Backend
from mjvault.store.fsutil import atomic_write

REMOTES_DIR = "remotes"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


# S3's own bucket rules (3-63 of a-z 0-9 . -, a letter or digit at each end); MinIO, R2, B2
# and Wasabi keep to them as well.
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*):")
_REGION = re.compile(r"[A-Za-z0-9-]{1,64}")
FORMS = "a folder's absolute path, file:///absolute/path or s3://bucket/prefix"


@dataclass(frozen=True)
class RemoteURL:
    """A parsed remote URL. ``path``: a folder's absolute path, or an S3 prefix (may be "")."""

    scheme: str
    bucket: str
    path: str

    def __str__(self) -> str:
        if self.scheme == "s3":
            return f"s3://{self.bucket}/{self.path}".rstrip("/")
        return "file://" + self.path


def _bad(text: str, why: str) -> ConfigError:
    # What precedes '@' in a URL's host part is likely a key and secret: never echo it.
    shown = re.sub(r"//[^/]*@", "//***@", text)
    return ConfigError(f"bad remote URL {shown!r}: {why}")


def _check_characters(text: str, shown: str) -> None:
    if "\\" in text:
        raise _bad(shown, "a backslash is not a path separator here; use '/'")
    if any(not c.isprintable() and c != " " for c in text):
        raise _bad(shown, "it holds a control or invisible character")


def _segments(text: str, path: str, *, folder: bool) -> list[str]:
    """The ``/``-separated parts of ``path``: never ``..``; ``.`` and ``//`` only in folders."""
    parts = path.split("/")
    if parts and parts[-1] == "":
        parts.pop()  # one trailing slash is how people write folders
    if ".." in parts:
        raise _bad(text, "'..' is not allowed in a remote path; write the path it means")
    if any(p.strip() != p for p in parts):
        # Almost always a pasting slip, and invisible in every message that names the path.
        raise _bad(text, "a part of the path begins or ends with a space")
    if folder:
        return [p for p in parts if p not in ("", ".")]
    if "." in parts:
        raise _bad(text, "'.' is not allowed in an s3 prefix")
    if "" in parts:
        raise _bad(text, "an s3 prefix has no empty parts ('//')")
    return parts


def parse_remote_url(text: str) -> RemoteURL:
    """Parse what a user typed or a vault stored; anything doubtful is a one-line ConfigError.

    Accepted: ``s3://bucket[/prefix]``, ``file:///absolute/path`` and an absolute folder path
    (``~`` expands). Refused: relative paths (they would mean wherever the command happens to
    run), unknown schemes, empty or malformed buckets, credentials, ``?``/``#``, and ``..``.
    """
    if not isinstance(text, str):
        raise ConfigError(f"bad remote URL {text!r}: expected text, {FORMS}")
    if not text.strip():
        raise ConfigError(f"bad remote URL {text!r}: it is empty; give {FORMS}")
    if text.strip() != text:
        raise _bad(text, "it has spaces around it")
    _check_characters(text, text)
    scheme = _SCHEME.match(text)
    if scheme and text[scheme.end() :].startswith("//"):
        name = scheme.group(1).lower()
        rest = text[scheme.end() + 2 :]
        if name == "s3":
            return _parse_s3(text, rest)
        if name != "file":
            raise _bad(text, f"unsupported scheme {name}://; give {FORMS}")
        if rest.startswith("localhost/"):
            rest = rest[len("localhost") :]
        if not rest.startswith("/"):
            raise _bad(text, "a file:// URL needs an absolute path (file:///absolute/path)")
        return _parse_folder(text, rest)
    if scheme and scheme.group(1).lower() in ("s3", "file"):
        form = "s3://bucket/prefix" if scheme.group(1).lower() == "s3" else "file:///path"
        raise _bad(text, f"write {form} (two slashes after the colon)")
    if text.startswith("~"):
        expanded = os.path.expanduser(text)
        if expanded != text:
            return _parse_folder(text, expanded)
    if not text.startswith("/"):
        raise _bad(
            text,
            f"a folder remote needs an absolute path (a relative one depends on the "
            f"current directory); give {FORMS}",
        )
    return _parse_folder(text, text)


def _parse_folder(text: str, path: str) -> RemoteURL:
    _check_characters(path, text)
    parts = _segments(text, path, folder=True)
    return RemoteURL("file", "", "/" + "/".join(parts))


def _parse_s3(text: str, rest: str) -> RemoteURL:
    bucket, _, prefix = rest.partition("/")
    if "@" in bucket:
        # Never echo the URL: what precedes '@' is likely a key and secret.
        raise ConfigError(
            "bad remote URL: s3 URLs carry no credentials; they come from "
            "AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY"
        )
    if not bucket:
        raise _bad(text, "an s3 URL needs a bucket (s3://bucket/prefix)")
    if not _BUCKET.fullmatch(bucket) or ".." in bucket:
        hint = " (the server goes in --endpoint-url)" if ":" in bucket else ""
        raise _bad(
            text,
            f"{bucket!r} is not a bucket name: 3-63 of a-z, 0-9, '.' and '-', "
            f"a letter or digit at each end{hint}",
        )
    for char in "?#":
        if char in prefix:
            raise _bad(text, f"'{char}' is not allowed: options go in --region / --endpoint-url")
    _check_characters(prefix, text)
    return RemoteURL("s3", bucket, "/".join(_segments(text, prefix, folder=False)))


def normalise_url(url: str) -> str:
    """The canonical, stored form of a remote URL (``file:///abs/path`` or ``s3://b/p``)."""
    return str(parse_remote_url(url))


@dataclass(frozen=True)
class RemoteSpec:
    name: str
    url: str
    #: A plain vault's remote that seals and renames every object with the remote's own key.
    encrypt: bool = False
    endpoint_url: str | None = None
    region: str | None = None
    allow_http: bool = False
    virtual_hosted: bool = False

    @property
    def is_s3(self) -> bool:
        return self.url.startswith("s3://")

    def to_json(self) -> dict[str, object]:
        return asdict(self)


def check_name(name: str) -> str:
    if not _NAME.fullmatch(name):
        raise ConfigError(
            f"bad remote name {name!r}: use letters, digits, '.', '_' or '-' (at most 64)"
        )
    return name


def check_spec(spec: RemoteSpec) -> RemoteSpec:
    """``spec`` with its URL in canonical form, or a one-line ConfigError saying what is wrong."""
    check_name(spec.name)
    parsed = parse_remote_url(spec.url)
    for flag in ("encrypt", "allow_http", "virtual_hosted"):
        if not isinstance(getattr(spec, flag), bool):
            raise ConfigError(f"remote {spec.name}: {flag} must be true or false")
    if parsed.scheme != "s3":
        given = [
            option
            for option, value in (
                ("--endpoint-url", spec.endpoint_url),
                ("--region", spec.region),
                ("--allow-http", spec.allow_http),
                ("--virtual-hosted", spec.virtual_hosted),
            )
            if value
        ]
        if given:
            raise ConfigError(f"{', '.join(given)} go with s3:// remotes, not folders")
    if spec.endpoint_url is not None:
        _check_endpoint(spec.endpoint_url)
    if spec.region is not None and (
        not isinstance(spec.region, str) or not _REGION.fullmatch(spec.region)
    ):
        raise ConfigError(f"bad region {spec.region!r}: letters, digits and '-' (e.g. eu-west-1)")
    return replace(spec, url=str(parsed))


def _check_endpoint(endpoint: object) -> None:
    from urllib.parse import urlsplit

    form = "give http(s)://host[:port]"
    if not isinstance(endpoint, str):
        raise ConfigError(f"bad endpoint URL {endpoint!r}: {form}")
    try:
        parts = urlsplit(endpoint)
        parts.port  # noqa: B018 - raises on a malformed port
    except ValueError:
        raise ConfigError(f"bad endpoint URL {endpoint!r}: {form}") from None
    if "@" in parts.netloc:
        raise ConfigError(
            "bad endpoint URL: it carries credentials; they come from AWS_ACCESS_KEY_ID / "
            "AWS_SECRET_ACCESS_KEY"
        )
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"bad endpoint URL {endpoint!r}: {form}")


def open_backend(spec: RemoteSpec) -> Backend:
    url = parse_remote_url(spec.url)  # whoever made the spec, nothing malformed is opened
    if url.scheme == "s3":
        try:
            from mjvault.remotes.s3 import S3Backend, S3Location
        except ImportError:  # pragma: no cover - depends on the installed extras
            raise MjvaultError(
                "s3 remotes need obstore", hint="pip install 'mjvault[s3]'"
            ) from None
        return S3Backend(
            S3Location(
                url.bucket,
                url.path,
                endpoint_url=spec.endpoint_url,
                region=spec.region,
                allow_http=spec.allow_http,
                virtual_hosted=spec.virtual_hosted,
            )
        )
    from mjvault.remotes.folder import FolderBackend

    return FolderBackend(Path(url.path))


def remotes_dir(vault_path: Path) -> Path:
    return vault_path / REMOTES_DIR


def state_dir(vault_path: Path, name: str) -> Path:
    """Local state kept for one remote (the id map of an encrypting remote)."""
    return remotes_dir(vault_path) / check_name(name)


def spec_path(vault_path: Path, name: str) -> Path:
    return remotes_dir(vault_path) / f"{check_name(name)}.json"


def save_spec(vault_path: Path, spec: RemoteSpec) -> None:
    spec = check_spec(spec)
    folder = remotes_dir(vault_path)
    folder.mkdir(mode=0o700, exist_ok=True)
    atomic_write(
        spec_path(vault_path, spec.name),
        json.dumps(spec.to_json(), indent=2).encode("utf-8"),
        mode=0o600,
    )


def load_spec(vault_path: Path, name: str) -> RemoteSpec:
    """The stored remote, checked as strictly as when it was added (files can be edited)."""
    path = spec_path(vault_path, name)
    try:
        doc = json.loads(path.read_bytes())
    except FileNotFoundError:
        raise ConfigError(
            f"no remote named {name}", hint="see `mjvault remote list`, add one with `remote add`"
        ) from None
    except (OSError, ValueError) as exc:
        raise ConfigError(f"remote {name}: {path} is unreadable: {exc}") from None
    mend = f"`mjvault remote remove {name}` and add it again"
    try:
        if not isinstance(doc, dict):
            raise ConfigError(f"{path} holds no remote (a JSON object)")
        if doc.get("name") != name:
            raise ConfigError(f"{path} names another remote ({doc.get('name')!r})")
        return check_spec(RemoteSpec(**doc))
    except TypeError as exc:
        raise ConfigError(f"remote {name}: {path} is malformed: {exc}", hint=mend) from None
    except ConfigError as exc:
        raise ConfigError(f"remote {name}: {exc.message}", hint=mend) from None


def remote_names(vault_path: Path) -> list[str]:
    folder = remotes_dir(vault_path)
    if not folder.is_dir():
        return []
    return sorted(p.stem for p in folder.glob("*.json"))


def list_specs(vault_path: Path) -> list[RemoteSpec]:
    return [load_spec(vault_path, name) for name in remote_names(vault_path)]


def delete_spec(vault_path: Path, name: str) -> None:
    path = spec_path(vault_path, name)
    # Only its existence is checked: a malformed remote must stay removable.
    if not path.exists():
        raise ConfigError(
            f"no remote named {name}", hint="see `mjvault remote list`, add one with `remote add`"
        )
    os.unlink(path)
    state = state_dir(vault_path, name)
    if state.is_dir():
        import shutil

        shutil.rmtree(state)
