"""Named remotes of a vault: ``<vault>/remotes/<name>.json`` (mode 0600, no credentials).

A remote is a URL plus the options needed to reach it. Credentials are never stored here: an
S3 remote takes them from the ``AWS_*`` environment each time, as the AWS tools do.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path

from mjvault.errors import ConfigError, MjvaultError
from mjvault.remotes.backend import Backend
from mjvault.store.fsutil import atomic_write

REMOTES_DIR = "remotes"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


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


def normalise_url(url: str) -> str:
    """Folder paths become absolute ``file://`` URLs; ``s3://`` stays as given."""
    if url.startswith("s3://"):
        return url.rstrip("/")
    if re.match(r"^[a-z][a-z0-9+.-]*://", url) and not url.startswith("file://"):
        raise ConfigError(f"unsupported remote URL {url}: use a folder path, file://… or s3://…")
    path = url[len("file://") :] if url.startswith("file://") else url
    return "file://" + str(Path(path).expanduser().resolve())


def open_backend(spec: RemoteSpec) -> Backend:
    if spec.is_s3:
        try:
            from mjvault.remotes.s3 import S3Backend, S3Location, parse_s3_url
        except ImportError:  # pragma: no cover - depends on the installed extras
            raise MjvaultError(
                "s3 remotes need obstore", hint="pip install 'mjvault[s3]'"
            ) from None
        bucket, prefix = parse_s3_url(spec.url)
        return S3Backend(
            S3Location(
                bucket,
                prefix,
                endpoint_url=spec.endpoint_url,
                region=spec.region,
                allow_http=spec.allow_http,
                virtual_hosted=spec.virtual_hosted,
            )
        )
    from mjvault.remotes.folder import FolderBackend

    return FolderBackend(Path(spec.url[len("file://") :]))


def remotes_dir(vault_path: Path) -> Path:
    return vault_path / REMOTES_DIR


def state_dir(vault_path: Path, name: str) -> Path:
    """Local state kept for one remote (the id map of an encrypting remote)."""
    return remotes_dir(vault_path) / check_name(name)


def save_spec(vault_path: Path, spec: RemoteSpec) -> None:
    folder = remotes_dir(vault_path)
    folder.mkdir(mode=0o700, exist_ok=True)
    atomic_write(
        folder / f"{check_name(spec.name)}.json",
        json.dumps(spec.to_json(), indent=2).encode("utf-8"),
        mode=0o600,
    )


def load_spec(vault_path: Path, name: str) -> RemoteSpec:
    path = remotes_dir(vault_path) / f"{check_name(name)}.json"
    try:
        doc = json.loads(path.read_bytes())
        return RemoteSpec(**doc)
    except FileNotFoundError:
        raise ConfigError(
            f"no remote named {name}", hint="see `mjvault remote list`, add one with `remote add`"
        ) from None
    except (OSError, ValueError, TypeError) as exc:
        raise ConfigError(f"remote {name}: {path} is unreadable: {exc}") from None


def list_specs(vault_path: Path) -> list[RemoteSpec]:
    folder = remotes_dir(vault_path)
    if not folder.is_dir():
        return []
    return [load_spec(vault_path, p.stem) for p in sorted(folder.glob("*.json"))]


def delete_spec(vault_path: Path, name: str) -> None:
    load_spec(vault_path, name)  # a clear error for an unknown name
    os.unlink(remotes_dir(vault_path) / f"{check_name(name)}.json")
    state = state_dir(vault_path, name)
    if state.is_dir():
        import shutil

        shutil.rmtree(state)
