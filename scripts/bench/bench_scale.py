#!/usr/bin/env python3
"""Every command at 100k-1M jobs: the baseline of the million-jobs work (docs/design.md).

    python scripts/bench/bench_scale.py --jobs 100000 [--workdir DIR] [--budget 600]
                                        [--images-pool N] [--only NAME ...]
                                        [--rerun NAME ...] [--list]

Against a scaled account (``mjvault.testing.scaled``: jobs derived from (seed, index) on
demand, about 3.2 tiny distinct images per job) served by the bundled Midjourney-compatible
server in its own process, and a scaled archive folder of the same size, it runs each command
below as a child process and prints wall time, CPU time (user + system), peak RSS (the
kernel's accounting of that child alone), bytes on disk (``du``: allocated blocks) of what the
command leaves, and for push and pull the requests the local S3 server (moto) received:

    sync-first      first sync from the server into an empty vault (``--api v3``)
    sync-noop       sync with nothing new
    sync-full-noop  ``sync --full`` with nothing new
    archive         (set-up) write the archive folder, streamed (not an mjvault command)
    import          import the archive into an empty vault
    reimport        import it again: nothing new
    checkout        a symlink view of every image of the synced vault
    search-ids      ``search --ids a``: about three jobs out of four match
    export          ``export -f csv`` of every job
    gallery         a static gallery of every job
    verify          ``verify``
    verify-data     ``verify --read-data``
    gc              ``gc`` (nothing to remove)
    push            ``push`` to a fresh bucket on moto_server (requests counted by a proxy)
    clone           ``clone`` of that bucket into a new vault
    pull            ``pull`` with nothing new

``--images-pool N`` serves every media path from N distinct files per type
(``ScaledAccount(images_pool=N)``) and replaces the first sync by a ``build`` step: the vault
a first sync would leave, written without downloads (``mjvault.testing.pooled``; a test
proves it is the same vault), so a million-job vault is built in minutes and every command
after the first sync can be measured at that size. Work directory ``jobs-N-poolP``. What
the pool makes cheaper than reality is left out unless named with ``--only``: the first sync
(``sync-first``, into its own vault), checkout and gallery (file counts), the archive and
import (not pooled). push, clone and pull then move N image files, not one per image: their
requests are the metadata's.

A command that runs past ``--budget`` seconds is interrupted (SIGINT, then SIGKILL) and
reported as stopped, with its figures up to then. Resumable: results and the vaults built are
kept in ``--workdir``/jobs-N (results.json); a rerun skips what is recorded unless named with
``--rerun``, and a stopped first sync, build or import picks up where it stopped (its figures
are then those of the last part). push, clone and pull run together (moto keeps its buckets
in memory only). ``--rerun STEP`` alone measures STEP again and nothing else (with
``--only``, the steps named there that are not recorded too).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SEED = 7
MJ = [sys.executable, "-m", "mjvault"]
STEPS = (
    "sync-first", "build", "sync-noop", "sync-full-noop", "archive", "import", "reimport", "checkout",
    "search-ids", "export", "gallery", "verify", "verify-data", "gc", "push", "clone", "pull",
)  # fmt: skip
NEWLINE = b"\n"
RESUMABLE = ("sync-first", "build", "import")  # a stopped one picks up where it stopped
POOLED_SKIPS = {  # steps not run with --images-pool unless named with --only, and why
    "sync-first": "pooled: the build step stands for it",
    "archive": "pooled: the archive is not pooled",
    "import": "pooled: the archive is not pooled",
    "reimport": "pooled: the archive is not pooled",
    "checkout": "pooled: not measured (file counts as without a pool, blocks fewer)",
    "gallery": "pooled: not measured (one thumbnail per pooled file)",
}
SEARCH_QUERY = "a"  # in about three prompts out of four


@dataclass
class Result:
    step: str
    status: str  # ok, stopped (budget), failed (exit N)
    wall: float
    cpu: float
    peak_rss_kib: int
    disk_bytes: int | None = None
    requests: int | None = None
    note: str = ""

    def line(self) -> str:
        disk = "" if self.disk_bytes is None else f"{self.disk_bytes / 1e6:9.0f} MB"
        requests = "" if self.requests is None else f"{self.requests:>9}"
        return (
            f"{self.step:<15} {self.status:<10} {self.wall:8.1f} s {self.cpu:8.1f} s "
            f"{self.peak_rss_kib / 1024:8.0f} MB {disk:>12} {requests:>9}  {self.note}"
        )


HEADER = (
    f"{'command':<15} {'status':<10} {'wall':>10} {'cpu':>10} {'peak RSS':>11} "
    f"{'on disk':>12} {'requests':>9}"
)


def run_child(
    step: str, command: list[str], env: dict[str, str], budget: float, log: Path
) -> tuple[Result, bytes]:
    """Run ``command``; stop it at ``budget`` seconds. Its own rusage, whatever happens:
    through the launcher (``mjvault.testing.rusage``), since this process grows (the S3
    proxy runs in it) and a direct child would inherit its high-water mark at exec."""
    from mjvault.testing.rusage import launched, read_usage

    started = time.perf_counter()
    stdout = log.with_name(f"{step}.out")
    usage_file = log.with_name(f"{step}.rusage.json")
    usage_file.unlink(missing_ok=True)
    with open(log, "ab") as err, open(stdout, "wb") as out:
        err.write(f"\n== {step}: {' '.join(command)}\n".encode())
        err.flush()
        process = subprocess.Popen(
            launched(command, usage_file), env=env, stdout=out, stderr=err,
            start_new_session=True,  # one group: the interrupt reaches the command
        )  # fmt: skip
        deadline = started + budget
        stopped = False
        while True:
            try:
                process.wait(timeout=0.1)
                break
            except subprocess.TimeoutExpired:
                pass
            now = time.perf_counter()
            if not stopped and now > deadline:
                stopped = True
                os.killpg(process.pid, signal.SIGINT)  # a clean stop: the vault stays whole
                deadline = now + 60
            elif stopped and now > deadline:
                os.killpg(process.pid, signal.SIGKILL)
                deadline = now + 3600
    elapsed = time.perf_counter() - started
    if usage_file.exists():
        usage = read_usage(usage_file)
        code = os.waitstatus_to_exitcode(usage.status)
        cpu, peak_kib = usage.cpu_seconds, usage.peak_rss_kib
    else:  # the launcher itself was killed
        code, cpu, peak_kib = process.returncode, 0.0, 0
    state = "stopped" if stopped else "ok" if code == 0 else f"exit {code}"
    return Result(step, state, elapsed, cpu, peak_kib), stdout.read_bytes()


def disk_usage(*paths: Path) -> int:
    """Allocated bytes (``du -s``: 4 KiB blocks count, as they cost)."""
    existing = [str(path) for path in paths if path.exists()]
    if not existing:
        return 0
    out = subprocess.run(["du", "-s", "-B1", "-c", *existing], capture_output=True, text=True)
    return int(out.stdout.strip().splitlines()[-1].split()[0])


def sync_note(out: bytes) -> str:
    """What a sync with nothing new found, from its --json report: new jobs must be 0."""
    try:
        report = json.loads(out)
        return (
            f"{report['jobs_new']} new, {report['jobs_updated']} updated, "
            f"{report['jobs_listed']} listed, {report['listing_pages']} pages"
        )
    except (ValueError, KeyError, TypeError):
        return "no JSON report"


class Server:
    """The bundled server with a scaled account, in its own process (its GIL is its own).

    On the port it had last time (kept in ``port_file``): sync keeps its state per site
    address, and a sync against the same account at another port would not be incremental.
    """

    def __init__(self, jobs: int, pool: int | None, port_file: Path) -> None:
        self.token = secrets.token_urlsafe(16)
        port = port_file.read_text().strip() if port_file.exists() else "0"
        command = [sys.executable, __file__, "_serve", str(SEED), str(jobs), self.token,
                   str(pool or 0), port]  # fmt: skip
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            sys.exit(f"the server did not start (port {port} taken? remove {port_file})")
        self.settings: dict[str, str] = json.loads(line)
        port_file.write_text(self.settings["MJVAULT_WEB_BASE"].rsplit(":", 1)[1])

    def stop(self) -> int:
        """Stop it; its peak RSS in KiB (flat whatever the account's size, or not)."""
        self.process.send_signal(signal.SIGINT)
        _, _, usage = os.wait4(self.process.pid, 0)
        return int(usage.ru_maxrss)


def serve(seed: int, jobs: int, token: str, pool: int | None, port: int) -> None:
    sys.path.insert(0, str(ROOT))
    from mjvault.testing.devserver import connection_settings
    from mjvault.testing.scaled import ScaledAccount
    from mjvault.testing.server import FakeMidjourney

    account = ScaledAccount(seed, jobs, images_pool=pool)
    server = FakeMidjourney(account, token=token, rewrite_image_urls=True, port=port)
    with server:
        print(json.dumps(connection_settings(server)), flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            signal.pause()


def build(vault_path: str, seed: int, jobs: int, pool: int) -> None:
    """The ``build`` step's child: the vault a first sync leaves, from the server in the
    environment (``mjvault.testing.pooled``)."""
    sys.path.insert(0, str(ROOT))
    from mjvault import Vault
    from mjvault.sources.midjourney import ClientSettings, MidjourneyClient
    from mjvault.testing.pooled import build_synced_vault
    from mjvault.testing.scaled import ScaledAccount

    account = ScaledAccount(seed, jobs, images_pool=pool)
    settings = ClientSettings.from_env(api="v3", max_rps=100000.0)
    with Vault.open(Path(vault_path)) as vault, MidjourneyClient(settings) as client:
        try:
            report = build_synced_vault(vault, client, account)
        except KeyboardInterrupt:
            sys.exit(130)  # checkpointed: a rerun resumes
    print(json.dumps(asdict(report)), flush=True)


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.pool: int | None = args.images_pool
        pooled = f"-pool{self.pool}" if self.pool else ""
        self.work: Path = args.workdir / f"jobs-{args.jobs}{pooled}"
        self.work.mkdir(parents=True, exist_ok=True)
        self.results_file = self.work / "results.json"
        self.results: dict[str, dict[str, object]] = (
            json.loads(self.results_file.read_text()) if self.results_file.exists() else {}
        )
        self.log = self.work / "bench.log"
        self.synced = self.work / "vault-sync"  # first sync, or the build step with a pool
        self.first_synced = self.work / "vault-first-sync" if self.pool else self.synced
        self.imported = self.work / "vault-import"
        self.archive = self.work / "archive"
        # Beside the archive, not in it: import would report it as an unknown file.
        self.archive_done = self.work / "archive.complete"
        self.env = dict(os.environ, AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench")
        self.env["AWS_REGION"] = "us-east-1"
        self.env.pop("MJVAULT_VAULT", None)
        self.server: Server | None = None

    # -- bookkeeping -----------------------------------------------------------------------------
    def wanted(self, step: str) -> bool:
        if self.args.only and step not in self.args.only:
            return False
        if self.pool is None and step == "build":
            return False
        if self.pool is not None and step in POOLED_SKIPS and step not in self.args.only:
            return False
        return (
            step in self.args.rerun
            or step not in self.results
            or self.results[step]["status"] == "not run"
            or (self.results[step]["status"] == "stopped" and step in RESUMABLE)
        )

    def record(self, result: Result) -> None:
        self.save(result.step, asdict(result))
        print(result.line(), flush=True)

    def save(self, key: str, value: dict[str, object]) -> None:
        # Read again first: another run may be measuring other steps of the same vault.
        if self.results_file.exists():
            self.results.update(json.loads(self.results_file.read_text()))
        self.results[key] = value
        self.results_file.write_text(json.dumps(self.results, indent=2))

    def note_pooled_skips(self) -> None:
        for step, why in POOLED_SKIPS.items():
            if self.pool is not None and step not in self.results and step not in self.args.only:
                self.skip(step, why)

    def skip(self, step: str, why: str) -> None:
        if self.args.only and step not in self.args.only:
            return
        self.record(Result(step, "not run", 0, 0, 0, note=why))

    def run(
        self,
        step: str,
        command: list[str],
        *,
        env: dict[str, str] | None = None,
        disk: Callable[[], int] | None = None,
        budget: float | None = None,
    ) -> tuple[Result, bytes]:
        budget = budget or self.args.budgets.get(step, self.args.budget)
        result, out = run_child(step, command, env or self.env, budget, self.log)
        if result.status.startswith("exit"):
            tail = self.log.read_text(errors="replace").strip().splitlines()[-1:]
            result.note = " ".join(tail)[:120]
        elif result.status == "stopped":
            result.note = f"budget {budget:.0f} s"
        if disk is not None:
            result.disk_bytes = disk()
        return result, out

    def ok(self, step: str) -> bool:
        return self.results.get(step, {}).get("status") == "ok"

    def vault_ready(self) -> bool:
        """The synced vault the later steps use: first sync's, or with a pool the build's."""
        return self.ok("build") if self.pool else self.ok("sync-first")

    def mj(self, vault: Path, *args: str) -> list[str]:
        return [*MJ, "--vault", str(vault), *args]

    # -- steps ---------------------------------------------------------------------------------
    def sync_steps(self) -> None:
        steps = ("sync-first", "build", "sync-noop", "sync-full-noop")
        wanted = [s for s in steps if self.wanted(s)]
        if not wanted:
            return
        self.server = Server(self.args.jobs, self.pool, self.work / "server-port")
        env = self.env | self.server.settings
        sync = ["--json", "sync", "--api", "v3", "--jobs", "16", "--max-rps", "100000"]
        try:
            if "sync-first" in wanted:
                first = self.first_synced
                if not (first / "config").exists():
                    subprocess.run([*MJ, "init", str(first)], check=True, env=self.env,
                                   capture_output=True)  # fmt: skip
                result, _ = self.run("sync-first", self.mj(first, *sync), env=env,
                                     disk=lambda: disk_usage(first))  # fmt: skip
                self.record(result)
            if "build" in wanted:
                self.build_step(env)
            for step, extra in (("sync-noop", []), ("sync-full-noop", ["--full"])):
                if step not in wanted:
                    continue
                if not self.vault_ready():
                    self.skip(step, "no synced vault (first sync or build did not finish)")
                    continue
                result, out = self.run(step, self.mj(self.synced, *sync, *extra), env=env)
                if result.status == "ok":
                    result.note = sync_note(out)
                self.record(result)
        finally:
            server_rss = self.server.stop()
            self.server = None
        print(f"{'':15} (the server's own peak RSS: {server_rss / 1024:.0f} MB)", flush=True)
        self.save("server-peak-rss-kib", {"status": "info", "value": server_rss})

    def build_step(self, env: dict[str, str]) -> None:
        if "build" in self.args.rerun:
            shutil.rmtree(self.synced, ignore_errors=True)
        if not (self.synced / "config").exists():
            subprocess.run([*MJ, "init", str(self.synced)], check=True, env=self.env,
                           capture_output=True)  # fmt: skip
        command = [sys.executable, __file__, "_build", str(self.synced), str(SEED),
                   str(self.args.jobs), str(self.pool)]  # fmt: skip
        result, out = self.run("build", command, env=env, disk=lambda: disk_usage(self.synced))
        if result.status == "ok":
            report = json.loads(out)
            result.note = (
                f"{report['jobs_new']} jobs, {report['media_stored']} pooled files, "
                f"{report['listing_pages']} pages over HTTP"
            )
        self.record(result)

    def import_steps(self) -> None:
        if not any(self.wanted(step) for step in ("archive", "import", "reimport")):
            return
        if self.wanted("archive") and not self.archive_done.exists():
            shutil.rmtree(self.archive, ignore_errors=True)
            command = [sys.executable, str(ROOT / "scripts" / "make_sample_archive.py"),
                       str(self.archive), "--jobs", str(self.args.jobs), "--seed", str(SEED),
                       "--scaled", "--workers", str(self.args.archive_workers)]  # fmt: skip
            result, _ = self.run("archive", command, disk=lambda: disk_usage(self.archive))
            result.note = f"{self.args.archive_workers} worker processes (RSS: the largest)"
            if result.status == "ok":
                self.archive_done.touch()
            self.record(result)
        if not self.archive_done.exists():
            for step in ("import", "reimport"):
                self.skip(step, "no complete archive")
            return
        for step in ("import", "reimport"):
            if not self.wanted(step):
                continue
            if step == "import" and step in self.args.rerun:
                shutil.rmtree(self.imported, ignore_errors=True)
            if not (self.imported / "config").exists():
                subprocess.run([*MJ, "init", str(self.imported)], check=True, env=self.env,
                               capture_output=True)  # fmt: skip
            if step == "reimport" and not self.ok("import"):
                self.skip(step, "first import did not finish")
                continue
            command = self.mj(self.imported, "--json", "import", str(self.archive))
            result, _ = self.run(step, command, disk=lambda: disk_usage(self.imported))
            self.record(result)

    def vault_steps(self) -> None:
        vault = self.synced
        view = self.work / "view"
        export = self.work / "export.csv"
        gallery = self.work / "gallery"
        steps: list[tuple[str, list[str], Callable[[], int] | None, Callable[[], None]]] = [
            ("checkout", self.mj(vault, "checkout", str(view), "--name", "bench",
                                 "--link", "symlink"),
             lambda: disk_usage(view),
             lambda: self._remove_view(vault, view)),
            ("search-ids", self.mj(vault, "search", "--ids", SEARCH_QUERY), None, lambda: None),
            ("export", self.mj(vault, "export", "-f", "csv", "-o", str(export)),
             lambda: disk_usage(export), lambda: export.unlink(missing_ok=True)),
            ("gallery", self.mj(vault, "gallery", str(gallery)), lambda: disk_usage(gallery),
             lambda: shutil.rmtree(gallery, ignore_errors=True)),
            ("verify", self.mj(vault, "verify"), None, lambda: None),
            ("verify-data", self.mj(vault, "verify", "--read-data"), None, lambda: None),
            ("gc", self.mj(vault, "gc"), lambda: disk_usage(vault), lambda: None),
        ]  # fmt: skip
        for step, command, disk, prepare in steps:
            if not self.wanted(step):
                continue
            if not self.vault_ready():
                self.skip(step, "no synced vault (first sync or build did not finish)")
                continue
            prepare()
            result, out = self.run(step, command, disk=disk)
            if step == "search-ids":
                result.note = f"{out.count(NEWLINE)} ids"
            self.record(result)

    def _remove_view(self, vault: Path, view: Path) -> None:
        subprocess.run(self.mj(vault, "checkout", "--remove", "bench"), env=self.env,
                       capture_output=True)  # fmt: skip
        shutil.rmtree(view, ignore_errors=True)

    def remote_steps(self) -> None:
        if not any(self.wanted(step) for step in ("push", "clone", "pull")):
            return
        if not self.vault_ready():
            for step in ("push", "clone", "pull"):
                self.skip(step, "no synced vault (first sync or build did not finish)")
            return
        sys.path.insert(0, str(ROOT))
        from mjvault.testing.objectstore import FaultProxy, MotoServer

        clone = self.work / "vault-clone"
        with MotoServer() as s3:
            proxy = FaultProxy(s3.port)  # forwards unchanged; counts requests
            try:
                bucket = f"bench{secrets.token_hex(4)}"
                s3.create_bucket(bucket)
                url = f"s3://{bucket}/mj"
                subprocess.run(self.mj(self.synced, "remote", "remove", "bench"), env=self.env,
                               capture_output=True)  # fmt: skip
                subprocess.run(self.mj(self.synced, "remote", "add", "bench", url,
                                       "--endpoint-url", proxy.endpoint, "--allow-http"),
                               env=self.env, check=True, capture_output=True)  # fmt: skip
                proxy.requests = 0
                proxy.by_area.clear()
                result, out = self.run("push", self.mj(self.synced, "--json", "push", "bench"))
                result.requests = proxy.requests
                # Media are loose (a PUT each); the metadata is what packs are for.
                areas = ", ".join(f"{k} {v}" for k, v in sorted(proxy.by_area.items()))
                result.note += ("; " if result.note else "") + f"requests: {areas}"
                with contextlib.suppress(ValueError):
                    pushed = json.loads(out)
                    result.note += (
                        f"; {pushed['packs_sent']} packs of {pushed['objects_sent']} objects sent"
                    )
                if result.status == "stopped":
                    result.note += f", {proxy.requests / result.wall:.0f} requests/s"
                self.record(result)
                if result.status != "ok":
                    self.skip("clone", "push did not finish")
                    self.skip("pull", "push did not finish")
                    return
                shutil.rmtree(clone, ignore_errors=True)
                proxy.requests = 0
                command = [*MJ, "--json", "clone", url, str(clone), "--endpoint-url",
                           proxy.endpoint, "--allow-http"]  # fmt: skip
                result, _ = self.run("clone", command, disk=lambda: disk_usage(clone))
                result.requests = proxy.requests
                self.record(result)
                proxy.requests = 0
                result, _ = self.run("pull", self.mj(self.synced, "--json", "pull", "bench"))
                result.requests = proxy.requests
                self.record(result)
            finally:
                proxy.stop()
                shutil.rmtree(clone, ignore_errors=True)

    def report(self) -> None:
        pooled = f", images from a pool of {self.pool} per type" if self.pool else ""
        print(f"\n{self.args.jobs} jobs{pooled}, results in {self.results_file}")
        print(HEADER)
        for step in STEPS:
            if step in self.results:
                print(Result(**self.results[step]).line())  # type: ignore[arg-type]
        server = self.results.get("server-peak-rss-kib")
        if server:
            print(f"server peak RSS: {int(server['value']) / 1024:.0f} MB")  # type: ignore[call-overload]


def main() -> None:
    # Started in the background by a shell without job control, this process and its
    # children would ignore SIGINT: no clean stop at a budget, a server that never stops.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    if len(sys.argv) == 7 and sys.argv[1] == "_serve":
        serve(int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], int(sys.argv[5]) or None,
              int(sys.argv[6]))  # fmt: skip
        return
    if len(sys.argv) == 6 and sys.argv[1] == "_build":
        build(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]))
        return
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--jobs", type=int, default=100_000, help="jobs (1M is the goal)")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/mjvault-bench-scale"))
    parser.add_argument("--budget", type=float, default=600, help="seconds per command")
    parser.add_argument(
        "--budget-for",
        action="append",
        default=[],
        metavar="STEP=SECONDS",
        help="another budget for one command (repeatable), e.g. push=300",
    )
    parser.add_argument("--archive-workers", type=int, default=2)
    parser.add_argument(
        "--images-pool",
        type=int,
        default=None,
        metavar="N",
        help="media from N distinct files per type; a build step instead of the first sync",
    )
    parser.add_argument("--only", nargs="*", default=[], choices=STEPS, metavar="STEP")
    parser.add_argument("--rerun", nargs="*", default=[], choices=STEPS, metavar="STEP")
    parser.add_argument("--list", action="store_true", help="print the recorded table only")
    args = parser.parse_args()
    if args.rerun and not args.only:
        args.only = list(args.rerun)  # measure those again, and nothing else
    if args.images_pool is not None and args.images_pool < 1:
        parser.error("--images-pool wants a positive number of files")
    args.budgets = {}
    for item in args.budget_for:
        step, _, seconds = item.partition("=")
        if step not in STEPS or not seconds:
            parser.error(f"--budget-for {item!r}: want STEP=SECONDS with STEP one of {STEPS}")
        args.budgets[step] = float(seconds)
    bench = Bench(args)
    if not args.list:
        print(f"{args.jobs} jobs in {bench.work}; budget {args.budget:.0f} s per command")
        print(HEADER, flush=True)
        bench.note_pooled_skips()
        bench.sync_steps()
        bench.import_steps()
        bench.vault_steps()
        bench.remote_steps()
    bench.report()


if __name__ == "__main__":
    main()
