"""Named remotes of a vault: ``<vault>/remotes/<name>.json`` (mode 0600, no credentials).

A remote is a URL plus the options needed to reach it. Credentials are never stored here: an
object-store remote takes them from its provider's environment variables each time
(``AWS_*``, ``AZURE_STORAGE_*``, ``GOOGLE_*``), as the providers' own tools do.
"""

from __future__ import annotations

import json
import logging
import os
import re
from dataclasses import dataclass, replace
from pathlib import Path

from mjvault.errors import ConfigError, MjvaultError
from mjvault.remotes.backend import Backend
from mjvault.reports import Report
from mjvault.store.fsutil import atomic_write

log = logging.getLogger(__name__)

REMOTES_DIR = "remotes"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


# S3's own bucket rules (3-63 of a-z 0-9 . -, a letter or digit at each end); MinIO, R2, B2
# and Wasabi keep to them as well.
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
# Azure's container rules: 3-63 of a-z 0-9 -, a letter or digit at each end, no "--".
_CONTAINER = re.compile(r"[a-z0-9][a-z0-9-]{1,61}[a-z0-9]")
# Google's bucket rules: a-z 0-9 - _ ., a letter or digit at each end; 3-63 characters, or up
# to 222 when dotted, each dotted part at most 63; no "goog" prefix and no "google" in it.
_GCS_BUCKET = re.compile(r"[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]")
_IPV4 = re.compile(r"\d{1,3}(\.\d{1,3}){3}")
_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*):")
_REGION = re.compile(r"[A-Za-z0-9-]{1,64}")
FORMS = (
    "a folder's absolute path, file:///absolute/path, s3://bucket/prefix, "
    "az://container/prefix or gs://bucket/prefix"
)

#: Object-store schemes as typed -> as stored (``azure://`` is another spelling of ``az://``).
STORE_SCHEMES = {"s3": "s3", "az": "az", "azure": "az", "gs": "gs"}
#: Where each object store's credentials come from (named in errors, never read here).
CREDENTIALS = {
    "s3": "AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY",
    "az": "AZURE_STORAGE_ACCOUNT_NAME / AZURE_STORAGE_ACCOUNT_KEY",
    "gs": "GOOGLE_APPLICATION_CREDENTIALS / GOOGLE_SERVICE_ACCOUNT",
}
#: The stored options each kind of remote takes, as their command-line flags.
OPTIONS = {
    "file": (),
    "s3": ("--endpoint-url", "--region", "--allow-http", "--virtual-hosted"),
    "az": ("--endpoint-url", "--allow-http"),
    "gs": ("--endpoint-url", "--allow-http"),
}
_WHAT = {"s3": "bucket", "az": "container", "gs": "bucket"}


@dataclass(frozen=True)
class RemoteURL:
    """A parsed remote URL. ``scheme``: ``file``, ``s3``, ``az`` or ``gs``; ``bucket``: the
    bucket or container; ``path``: a folder's absolute path, or a prefix (may be "")."""

    scheme: str
    bucket: str
    path: str

    def __str__(self) -> str:
        if self.scheme == "file":
            return "file://" + self.path
        return f"{self.scheme}://{self.bucket}/{self.path}".rstrip("/")


def _bad(text: str, why: str) -> ConfigError:
    # What precedes '@' in a URL's host part is likely a key and secret: never echo it.
    shown = re.sub(r"//[^/]*@", "//***@", text)
    return ConfigError(f"bad remote URL {shown!r}: {why}")


def _check_characters(text: str, shown: str) -> None:
    if "\\" in text:
        raise _bad(shown, "a backslash is not a path separator here; use '/'")
    if any(not c.isprintable() and c != " " for c in text):
        raise _bad(shown, "it holds a control or invisible character")


def _segments(text: str, path: str, *, folder: bool, scheme: str = "s3") -> list[str]:
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
        raise _bad(text, f"'.' is not allowed in a {scheme}:// prefix")
    if "" in parts:
        raise _bad(text, f"a {scheme}:// prefix has no empty parts ('//')")
    return parts


def parse_remote_url(text: str) -> RemoteURL:
    """Parse what a user typed or a vault stored; anything doubtful is a one-line ConfigError.

    Accepted: ``s3://bucket[/prefix]``, ``az://container[/prefix]`` (or ``azure://``),
    ``gs://bucket[/prefix]``, ``file:///absolute/path`` and an absolute folder path (``~``
    expands). Refused: relative paths (they would mean wherever the command happens to run),
    unknown schemes, empty or malformed buckets and containers (each provider's own naming
    rules), credentials, ``?``/``#``, and ``..``.
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
        if name in STORE_SCHEMES:
            return _parse_store(text, STORE_SCHEMES[name], rest)
        if name != "file":
            raise _bad(text, f"unsupported scheme {name}://; give {FORMS}")
        if rest.startswith("localhost/"):
            rest = rest[len("localhost") :]
        if not rest.startswith("/"):
            raise _bad(text, "a file:// URL needs an absolute path (file:///absolute/path)")
        return _parse_folder(text, rest)
    if scheme and scheme.group(1).lower() in (*STORE_SCHEMES, "file"):
        typed = scheme.group(1).lower()
        form = f"{typed}://{_WHAT[STORE_SCHEMES[typed]]}/prefix" if typed != "file" else ""
        raise _bad(text, f"write {form or 'file:///path'} (two slashes after the colon)")
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


def _parse_store(text: str, scheme: str, rest: str) -> RemoteURL:
    bucket, _, prefix = rest.partition("/")
    what = _WHAT[scheme]
    if "@" in bucket:
        # Never echo the URL: what precedes '@' is likely a key and secret.
        raise ConfigError(
            f"bad remote URL: {scheme}:// URLs carry no credentials; they come from "
            f"{CREDENTIALS[scheme]}"
        )
    if not bucket:
        raise _bad(text, f"a {scheme}:// URL needs a {what} ({scheme}://{what}/prefix)")
    why = _bucket_problem(scheme, bucket)
    if why:
        hint = " (the server goes in --endpoint-url)" if ":" in bucket else ""
        raise _bad(text, f"{bucket!r} is not a {what} name: {why}{hint}")
    for char in "?#":
        if char in prefix:
            raise _bad(text, f"'{char}' is not allowed: options go in {', '.join(OPTIONS[scheme])}")
    _check_characters(prefix, text)
    return RemoteURL(scheme, bucket, "/".join(_segments(text, prefix, folder=False, scheme=scheme)))


def _bucket_problem(scheme: str, name: str) -> str | None:
    """Why ``name`` breaks the provider's naming rules, or None when it keeps them."""
    ends = "a letter or digit at each end"
    if scheme == "s3":
        if not _BUCKET.fullmatch(name) or ".." in name:
            return f"3-63 of a-z, 0-9, '.' and '-', {ends}"
    elif scheme == "az":
        if not _CONTAINER.fullmatch(name) or "--" in name:
            return f"3-63 of a-z, 0-9 and '-', {ends}, no '--'"
    else:
        parts = name.split(".")
        rule = f"3-63 of a-z, 0-9, '-', '_' and '.' (222 when dotted), {ends}"
        if not _GCS_BUCKET.fullmatch(name) or "" in parts or any(len(p) > 63 for p in parts):
            return rule
        if len(parts) == 1 and len(name) > 63:
            return rule
        if name.startswith("goog") or "google" in name:
            return "Google reserves names that begin with 'goog' or hold 'google'"
        if _IPV4.fullmatch(name):
            return "an IP address is not a bucket name"
    return None


def normalise_url(url: str) -> str:
    """The canonical, stored form of a remote URL (``file:///abs/path``, ``s3://b/p``,
    ``az://c/p`` or ``gs://b/p``)."""
    return str(parse_remote_url(url))


@dataclass(frozen=True)
class RemoteSpec(Report):
    name: str
    url: str
    #: A plain vault's remote that seals and renames every object with the remote's own key.
    encrypt: bool = False
    endpoint_url: str | None = None
    region: str | None = None
    allow_http: bool = False
    virtual_hosted: bool = False
    #: Pushed to after every sync that stored something (one-shot or ``sync --watch``).
    auto_push: bool = False

    @property
    def is_s3(self) -> bool:
        return self.url.startswith("s3://")


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
    for flag in ("encrypt", "allow_http", "virtual_hosted", "auto_push"):
        if not isinstance(getattr(spec, flag), bool):
            raise ConfigError(f"remote {spec.name}: {flag} must be true or false")
    given = [
        option
        for option, value in (
            ("--endpoint-url", spec.endpoint_url),
            ("--region", spec.region),
            ("--allow-http", spec.allow_http),
            ("--virtual-hosted", spec.virtual_hosted),
        )
        if value and option not in OPTIONS[parsed.scheme]
    ]
    if given:
        takers = [f"{k}://" for k, flags in OPTIONS.items() if all(g in flags for g in given)]
        kind = "folders" if parsed.scheme == "file" else f"{parsed.scheme}:// remotes"
        raise ConfigError(f"{', '.join(given)} go with {', '.join(takers)} remotes, not {kind}")
    if spec.endpoint_url is not None:
        _check_endpoint(spec.endpoint_url, parsed.scheme)
    if spec.region is not None and (
        not isinstance(spec.region, str) or not _REGION.fullmatch(spec.region)
    ):
        raise ConfigError(f"bad region {spec.region!r}: letters, digits and '-' (e.g. eu-west-1)")
    return replace(spec, url=str(parsed))


def _check_endpoint(endpoint: object, scheme: str) -> None:
    from urllib.parse import urlsplit

    form = "give http(s)://host[:port]"
    if not isinstance(endpoint, str):
        raise ConfigError(f"bad endpoint URL {endpoint!r}: {form}")
    try:
        parts = urlsplit(endpoint)
        parts.port  # noqa: B018 - raises on a malformed port
    except ValueError:
        raise ConfigError(f"bad endpoint URL {endpoint!r}: {form}") from None
    if "@" in parts.netloc or parts.query:
        # A query is where a SAS token would ride: never echo it either.
        raise ConfigError(
            f"bad endpoint URL: it carries credentials or a query; credentials come from "
            f"{CREDENTIALS.get(scheme, CREDENTIALS['s3'])}"
        )
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"bad endpoint URL {endpoint!r}: {form}")


def open_backend(spec: RemoteSpec) -> Backend:
    url = parse_remote_url(spec.url)  # whoever made the spec, nothing malformed is opened
    if url.scheme == "file":
        from mjvault.remotes.folder import FolderBackend

        return FolderBackend(Path(url.path))
    try:
        import obstore  # noqa: F401 - every object store goes through it
    except ImportError:  # pragma: no cover - depends on the installed extras
        extra = {"s3": "s3", "az": "azure", "gs": "gcs"}[url.scheme]
        raise MjvaultError(
            f"{url.scheme}:// remotes need obstore", hint=f"pip install 'mjvault[{extra}]'"
        ) from None
    if url.scheme == "az":
        from mjvault.remotes.azure import AzureBackend, AzureLocation

        return AzureBackend(
            AzureLocation(
                url.bucket, url.path, endpoint_url=spec.endpoint_url, allow_http=spec.allow_http
            )
        )
    if url.scheme == "gs":
        from mjvault.remotes.gcs import GCSBackend, GCSLocation

        return GCSBackend(
            GCSLocation(
                url.bucket, url.path, endpoint_url=spec.endpoint_url, allow_http=spec.allow_http
            )
        )
    from mjvault.remotes.s3 import S3Backend, S3Location

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


def auto_push_names(vault_path: Path) -> list[str]:
    """The remotes marked ``auto_push``. One that no longer loads is skipped with a warning:
    a sync must not fail over a remote file someone broke by hand."""
    names = []
    for name in remote_names(vault_path):
        try:
            if load_spec(vault_path, name).auto_push:
                names.append(name)
        except ConfigError as exc:
            log.warning("remote %s skipped for auto-push: %s", name, exc.message)
    return names


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
