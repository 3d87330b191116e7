"""Azurite, the Azure Storage emulator, as a real Azure Blob service for tests.

``Azurite`` runs Azurite's blob service (``azurite-blob`` from the npm registry, pinned in
``tests/services/package.json`` and installed there by ``npm ci``) as a child process on a free
127.0.0.1 port, in memory or in a folder, with telemetry off. Azurite checks Shared Key
signatures, so a wrong account key is refused as Azure refuses it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.client
import os
import shutil
import subprocess
import tempfile
import time
import uuid
from email.utils import formatdate
from pathlib import Path
from typing import Any

from mjvault.remotes.config import RemoteSpec
from mjvault.testing.objectstore import free_port

#: Azurite's well-known development account (public, the same in every Azurite).
ACCOUNT = "devstoreaccount1"
ACCOUNT_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)
#: What a client needs in its environment to reach Azurite as that account.
ENV = {"AZURE_STORAGE_ACCOUNT_NAME": ACCOUNT, "AZURE_STORAGE_ACCOUNT_KEY": ACCOUNT_KEY}
#: Where ``npm ci`` in ``tests/services`` puts the executable (an editable install's tree).
SERVICES = Path(__file__).resolve().parents[2] / "tests" / "services"
API_VERSION = "2021-08-06"


def azurite_executable() -> str | None:
    """``$MJVAULT_AZURITE``, else the project's pinned copy, else one on PATH."""
    given = os.environ.get("MJVAULT_AZURITE")
    if given:
        return given if os.access(given, os.X_OK) else None
    pinned = SERVICES / "node_modules" / ".bin" / "azurite-blob"
    if pinned.exists():
        return str(pinned)
    return shutil.which("azurite-blob")


def missing() -> str | None:
    """Why Azurite cannot run here, or None."""
    if shutil.which("node") is None:
        return "Node.js is not installed (Azurite runs on it)"
    if azurite_executable() is None:
        return f"Azurite is not installed (npm ci in {SERVICES})"
    return None


class Azurite:
    """``with Azurite() as az: az.endpoint`` -> ``http://127.0.0.1:PORT/devstoreaccount1``.

    ``folder``: keep blobs there (else in memory, gone when it stops). ``timeout``: seconds to
    wait for it to listen before giving up with its own output.
    """

    def __init__(self, *, folder: Path | None = None, timeout: float = 60.0) -> None:
        exe = azurite_executable()
        if exe is None or shutil.which("node") is None:
            raise RuntimeError(missing() or "Azurite is not installed")
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}/{ACCOUNT}"
        self._work = tempfile.TemporaryDirectory(prefix="azurite-")
        self._log_path = Path(self._work.name) / "azurite.log"
        args = [exe, "--blobHost", "127.0.0.1", "--blobPort", str(self.port), "--silent"]
        args += ["--disableTelemetry", "--skipApiVersionCheck"]
        args += ["--location", str(folder)] if folder is not None else ["--inMemoryPersistence"]
        with open(self._log_path, "wb") as log:
            # Its own folder as cwd: Azurite may leave files where it runs.
            self._proc = subprocess.Popen(
                args, cwd=self._work.name, stdout=log, stderr=subprocess.STDOUT
            )
        try:
            self._wait(timeout)
        except RuntimeError:
            self.stop()
            raise

    def _wait(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"Azurite exited at start: {self._log()}")
            try:
                self._request("GET", "/", "comp=list")
                return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"Azurite did not listen within {timeout:.0f} s: {self._log()}")

    def _log(self) -> str:
        try:
            return self._log_path.read_text(errors="replace").strip()[-500:]
        except OSError:
            return "(no output)"

    def _request(self, method: str, path: str, query: str) -> int:
        """One Shared Key signed request to the account (as Azure's own clients sign)."""
        full = f"/{ACCOUNT}{path}".rstrip("/") or "/"
        headers = {"x-ms-date": formatdate(usegmt=True), "x-ms-version": API_VERSION}
        canonical = "".join(f"{k}:{v}\n" for k, v in sorted(headers.items()))
        params = "".join(f"\n{k}:{v}" for k, v in sorted(p.split("=") for p in query.split("&")))
        # VERB, then 11 standard headers (all empty: a zero Content-Length is signed as ""),
        # the x-ms-* headers, and the resource with its query.
        to_sign = f"{method}\n" + "\n" * 11 + canonical + f"/{ACCOUNT}{full}{params}"
        digest = hmac.new(base64.b64decode(ACCOUNT_KEY), to_sign.encode(), hashlib.sha256)
        headers["Authorization"] = (
            f"SharedKey {ACCOUNT}:{base64.b64encode(digest.digest()).decode()}"
        )
        if method == "PUT":
            headers["Content-Length"] = "0"
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            conn.request(method, f"{full}?{query}", headers=headers)
            response = conn.getresponse()
            response.read()
            return response.status
        finally:
            conn.close()

    def create_container(self, name: str) -> None:
        status = self._request("PUT", f"/{name}", "restype=container")
        if status != 201:
            raise RuntimeError(f"creating container {name}: HTTP {status}")

    def spec(self, name: str = "offsite", **options: object) -> RemoteSpec:
        """A remote named ``name`` on a fresh, empty container of this Azurite (prefix ``mj``).
        ``options`` are :class:`RemoteSpec` fields (``endpoint_url`` may point at a proxy)."""
        container = f"c-{uuid.uuid4().hex[:12]}"
        self.create_container(container)
        fields: dict[str, Any] = {"endpoint_url": self.endpoint, **options}
        return RemoteSpec(name, f"az://{container}/mj", **fields)

    def stop(self) -> None:
        if self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._work.cleanup()

    def __enter__(self) -> Azurite:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
