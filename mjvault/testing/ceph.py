"""A one-node Ceph cluster with the RADOS Gateway, for tests and benchmarks.

``CephCluster(folder)`` starts Debian's Ceph daemons (``scripts/services/install-ceph`` installs
them) as child processes whose every file lives in ``folder``: one monitor, one OSD on
``memstore`` (objects in RAM, nothing to format), and ``radosgw`` serving S3 on a free
127.0.0.1 port, with a user whose keys are ``testing``/``testing`` (what the test suite's
``S3_ENV`` sends to moto too). No manager, no systemd, no root.

What a bare cluster needs that the defaults do not give, found by starting one (Ceph 16.2):

* ``auth = none`` everywhere keeps keyrings out, but then radosgw hangs for
  ``client_mount_timeout`` (300 s) with "failed to fetch mon config" unless the monitor
  connection is in ``crc`` mode (``ms_mon_client_mode``); the timeout is lowered so any other
  failure to reach the monitor shows in seconds.
* One OSD holds one copy: pools of size 1 must be allowed (``mon_allow_pool_size_one``), few
  placement groups, the per-OSD PG limit raised, the autoscaler off.
* Daemons default to /var/log/ceph, /var/run/ceph and /var/lib/ceph; the monitor's cluster and
  audit logs too. All are pointed into the folder. The monitor warns below 30 % free disk
  (``mon_data_avail_warn``), which a busy machine may be; that warning is silenced.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import json
import os
import shutil
import signal
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

from mjvault.remotes.config import RemoteSpec
from mjvault.testing.objectstore import free_port

#: The daemons and tools a cluster needs (packages ceph-mon, ceph-osd, radosgw, ceph-base).
PROGRAMS = ("ceph-mon", "ceph-osd", "radosgw", "radosgw-admin", "monmaptool", "ceph")

#: The S3 keys of the user every cluster creates (the test suite's S3_ENV uses the same).
ACCESS_KEY = "testing"
SECRET_KEY = "testing"


def sigv4_headers(method: str, host: str, path: str, region: str = "us-east-1") -> dict[str, str]:
    """AWS Signature V4 headers for a request without a body or a query, signed with the
    cluster user's keys: radosgw, unlike moto, checks every request."""
    now = time.gmtime()
    stamp, day = time.strftime("%Y%m%dT%H%M%SZ", now), time.strftime("%Y%m%d", now)
    empty = hashlib.sha256(b"").hexdigest()
    headers = {"host": host, "x-amz-content-sha256": empty, "x-amz-date": stamp}
    names = ";".join(sorted(headers))
    canonical = "\n".join(
        [method, path, "", *(f"{k}:{headers[k]}" for k in sorted(headers)), "", names, empty]
    )
    scope = f"{day}/{region}/s3/aws4_request"
    to_sign = "\n".join(
        ["AWS4-HMAC-SHA256", stamp, scope, hashlib.sha256(canonical.encode()).hexdigest()]
    )
    key = f"AWS4{SECRET_KEY}".encode()
    for part in (day, region, "s3", "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    return headers | {
        "authorization": f"AWS4-HMAC-SHA256 Credential={ACCESS_KEY}/{scope}, "
        f"SignedHeaders={names}, Signature={signature}"
    }


class CephError(RuntimeError):
    """The cluster could not be started: which step, and the last lines of its log."""


def ceph_unavailable() -> str | None:
    """Why a cluster cannot be started here (a skip reason), or None when it can."""
    missing = [p for p in PROGRAMS if shutil.which(p) is None]
    if missing:
        return (
            f"Ceph is not installed ({', '.join(missing)} missing; "
            "scripts/services/install-ceph installs it)"
        )
    return None


def _tail(path: Path, lines: int = 3) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return f"(no log at {path})"
    last = [line.strip()[-200:] for line in text if line.strip()][-lines:]
    return " | ".join(last) or f"({path} is empty)"


class CephCluster:
    """``with CephCluster(folder) as ceph: ceph.endpoint`` -> ``http://127.0.0.1:PORT``.

    ``folder`` must be empty or absent; the cluster's data, logs and sockets stay in it.

    ``memstore_bytes`` bounds what the OSD holds (in RAM); ``timeout`` bounds the start.
    """

    def __init__(
        self, folder: Path, *, memstore_bytes: int = 1 << 30, timeout: float = 90.0
    ) -> None:
        reason = ceph_unavailable()
        if reason:
            raise CephError(reason)
        self.folder = Path(folder).resolve()
        self.folder.mkdir(parents=True, exist_ok=True)
        if any(self.folder.iterdir()):
            raise CephError(f"{self.folder} is not empty: a cluster starts in a fresh folder")
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self._procs: list[tuple[str, subprocess.Popen[bytes]]] = []
        self._deadline = time.monotonic() + timeout
        self._memstore_bytes = memstore_bytes
        try:
            self._start()
        except BaseException:
            self.stop()
            raise

    # -- layout -----------------------------------------------------------------------------
    @property
    def conf(self) -> Path:
        return self.folder / "ceph.conf"

    def _log(self, name: str) -> Path:
        return self.folder / "log" / f"ceph-{name}.log"

    def _write_conf(self, mon_port: int) -> None:
        f = self.folder
        for sub in ("log", "run", "crash", "mon", "osd", "rgw"):
            (f / sub).mkdir(exist_ok=True)
        (f / "keyring").touch()
        settings = {
            "fsid": str(uuid.uuid4()),
            "mon_host": f"v2:127.0.0.1:{mon_port}",
            "ms_bind_msgr1": "false",
            "ms_bind_msgr2": "true",
            "auth_cluster_required": "none",
            "auth_service_required": "none",
            "auth_client_required": "none",
            "ms_mon_client_mode": "crc",
            "client_mount_timeout": "15",
            "keyring": f / "keyring",
            "run_dir": f / "run",
            "crash_dir": f / "crash",
            "admin_socket": f / "run" / "$cluster-$name.$pid.asok",
            "log_file": f / "log" / "$cluster-$name.log",
            "mon_cluster_log_file": f / "log" / "cluster.log",
            "mon_data_avail_warn": "1",
            "mon_data_avail_crit": "0",
            "osd_pool_default_size": "1",
            "osd_pool_default_min_size": "1",
            "mon_allow_pool_size_one": "true",
            "osd_pool_default_pg_num": "8",
            "osd_pool_default_pgp_num": "8",
            "osd_pool_default_pg_autoscale_mode": "off",
            "mon_max_pg_per_osd": "1000",
            "mon_warn_on_pool_no_redundancy": "false",
            "osd_crush_chooseleaf_type": "0",
        }
        sections: dict[str, dict[str, Any]] = {
            "global": settings,
            "mon.a": {"mon_data": f / "mon"},
            "osd.0": {
                "osd_data": f / "osd",
                "osd_objectstore": "memstore",
                "memstore_device_bytes": str(self._memstore_bytes),
                "osd_journal_size": "0",
            },
            "client.rgw": {
                "rgw_frontends": f"beast endpoint=127.0.0.1:{self.port}",
                "rgw_data": f / "rgw",
                "rgw_dns_name": "127.0.0.1",
            },
        }
        text = "".join(
            f"[{name}]\n" + "".join(f"{k} = {v}\n" for k, v in values.items())
            for name, values in sections.items()
        )
        self.conf.write_text(text)

    # -- start ------------------------------------------------------------------------------
    def _left(self) -> float:
        left = self._deadline - time.monotonic()
        if left <= 0:
            raise CephError("the Ceph cluster did not start in time")
        return left

    def _tool(self, what: str, *args: str, log: str = "") -> str:
        """Run a Ceph command line to completion within the start's deadline."""
        try:
            done = subprocess.run(
                [*args, "-c", str(self.conf)],
                capture_output=True,
                timeout=self._left(),
                cwd=self.folder,
            )
        except subprocess.TimeoutExpired:
            raise CephError(f"{what} did not finish in time ({_tail(self._log(log))})") from None
        if done.returncode != 0:
            detail = done.stderr.decode(errors="replace").strip().splitlines()[-2:]
            raise CephError(f"{what} failed ({done.returncode}): {' | '.join(detail)}")
        return done.stdout.decode(errors="replace")

    def _daemon(self, name: str, *args: str) -> None:
        with open(self.folder / "log" / f"{name}.stderr", "wb") as stderr:
            proc = subprocess.Popen(
                [*args, "-f", "-c", str(self.conf)],
                stdout=subprocess.DEVNULL,
                stderr=stderr,
                cwd=self.folder,
                start_new_session=True,
            )
        self._procs.append((name, proc))

    def _check_alive(self) -> None:
        for name, proc in self._procs:
            if proc.poll() is not None:
                log = self._log(name)
                stderr = self.folder / "log" / f"{name}.stderr"
                last = _tail(stderr) if stderr.exists() and stderr.stat().st_size else _tail(log)
                raise CephError(f"{name} exited with {proc.returncode}: {last}")

    def _start(self) -> None:
        mon_port = free_port()
        self._write_conf(mon_port)
        monmap = self.folder / "monmap"
        fsid = self._conf_value("fsid")
        self._tool(
            "monmaptool",
            "monmaptool", "--create", "--fsid", fsid,
            "--addv", "a", f"[v2:127.0.0.1:{mon_port}]", str(monmap),
        )  # fmt: skip
        self._tool("ceph-mon --mkfs", "ceph-mon", "--mkfs", "-i", "a", "--monmap", str(monmap))
        self._daemon("mon.a", "ceph-mon", "-i", "a")
        osd_uuid = str(uuid.uuid4())
        self._ceph("ceph osd new", "osd", "new", osd_uuid, "0")
        self._tool(
            "ceph-osd --mkfs", "ceph-osd", "-i", "0", "--mkfs", "--osd-uuid", osd_uuid, log="osd.0"
        )
        self._daemon("osd.0", "ceph-osd", "-i", "0")
        self._tool(
            "radosgw-admin user create",
            "radosgw-admin", "user", "create", "--uid", ACCESS_KEY,
            "--display-name", "mjvault tests", "--access-key", ACCESS_KEY,
            "--secret-key", SECRET_KEY,
        )  # fmt: skip
        self._daemon("client.rgw", "radosgw", "-n", "client.rgw")
        self._wait_for_gateway()

    def _conf_value(self, key: str) -> str:
        for line in self.conf.read_text().splitlines():
            name, _, value = line.partition(" = ")
            if name == key:
                return value
        raise KeyError(key)

    def _ceph(self, what: str, *args: str) -> str:
        """A ``ceph`` command, retried while the monitor is still coming up."""
        while True:
            self._check_alive()
            try:
                return self._tool(what, "ceph", "--connect-timeout", "5", *args, log="mon.a")
            except CephError:
                if time.monotonic() + 1 > self._deadline:
                    raise
                time.sleep(0.5)

    def _wait_for_gateway(self) -> None:
        while True:
            self._check_alive()
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                try:
                    conn.request("GET", "/")
                    response = conn.getresponse()
                    response.read()
                    if response.status < 500:
                        return
                finally:
                    conn.close()
            except OSError:
                pass
            if time.monotonic() > self._deadline:
                raise CephError(
                    f"radosgw did not answer on {self.endpoint} in time: "
                    f"{_tail(self._log('client.rgw'))}"
                )
            time.sleep(0.2)

    # -- use --------------------------------------------------------------------------------
    def _request(self, method: str, path: str) -> int:
        """A signed S3 request (path style) with the cluster user's keys; the status."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            headers = sigv4_headers(method, f"127.0.0.1:{self.port}", path)
            conn.request(method, path, headers=headers)
            response = conn.getresponse()
            response.read()
            return response.status
        finally:
            conn.close()

    def create_bucket(self, name: str) -> None:
        status = self._request("PUT", f"/{name}")
        if status != 200:
            raise RuntimeError(f"creating bucket {name}: HTTP {status}")

    def spec(self, name: str = "offsite", **options: object) -> RemoteSpec:
        """A remote named ``name`` on a fresh, empty bucket of this gateway (prefix ``mj``).
        ``options`` are :class:`RemoteSpec` fields (``endpoint_url`` may point at a proxy)."""
        bucket = f"b-{uuid.uuid4().hex[:12]}"
        self.create_bucket(bucket)
        fields: dict[str, Any] = {"endpoint_url": self.endpoint, **options}
        return RemoteSpec(name, f"s3://{bucket}/mj", **fields)

    def gateway_requests(self) -> int:
        """Requests the gateway has served so far (its ``rgw.req`` performance counter, read
        through its admin socket): what a provider would bill, counted without a proxy."""
        pid = dict(self._procs)["client.rgw"].pid
        sock = self.folder / "run" / f"ceph-client.rgw.{pid}.asok"
        done = subprocess.run(
            ["ceph", "--admin-daemon", str(sock), "perf", "dump"],
            capture_output=True,
            timeout=30,
            check=True,
        )
        return int(json.loads(done.stdout)["rgw"]["req"])

    def stop(self) -> None:
        """Stop every daemon (SIGTERM, then SIGKILL) and wait for each: nothing is left."""
        for _, proc in reversed(self._procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for _, proc in reversed(self._procs):
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        self._procs.clear()

    def __enter__(self) -> CephCluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
