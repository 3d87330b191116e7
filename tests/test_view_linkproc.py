"""The link process: a big checkout's files made by a process of its own.

It must make exactly the view the in-process threads make (links, copies, hard links,
collisions, a missing object, a file in the way), carry every failure back as the error the
threads would raise, and fail cleanly when it dies, when the disk fills or at Ctrl-C: one
line, no traceback, a file list that names only files that exist, and a rerun that finishes
the view.
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mjvault import Vault
from mjvault.errors import UsageError
from mjvault.views import linkproc, reconcile
from mjvault.views.links import LinkKind, Made, NameTaken, ObjectMissing
from mjvault.views.registry import ViewDefinition, ViewRegistry
from tests.conftest import png_bytes, record_json, run_cli
from tests.fullfs import SmallFs, small_fs
from tests.test_checkout_kill import layout

BIG_JOBS = 1_500  # 6,000 images: the CLI makes them through the link process
TEMPLATE = "{date:%Y/%m}/{prompt:40}_{job_id}_{index}.{ext}"


def records(vault: Vault, name: str) -> dict[str, tuple[str, str, str | None]]:
    view = ViewRegistry(vault).load(name)
    return {r.path: (r.oid, r.kind.value, r.plain) for _, _, r in view.iter_files()}


# -- the same view, whoever makes it -------------------------------------------------------------


def _fill_small(vault: Vault) -> None:
    """Jobs whose names collide (three prompts for 40 jobs), over several batches."""
    with vault.writer("test") as writer:
        for n in range(40):
            oids = [writer.put_media(png_bytes(n * 10 + i, size=64)) for i in range(3)]
            prompt = ("fox", "owl", "cat")[n % 3]
            writer.add_job(record_json(f"job-{n:03d}", prompt), oids)


@pytest.mark.parametrize("kind", [LinkKind.SYMLINK, LinkKind.COPY, LinkKind.HARDLINK])
def test_the_link_process_makes_the_view_threads_make(
    vault: Vault, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: LinkKind
) -> None:
    _fill_small(vault)
    monkeypatch.setattr(reconcile, "BATCH_JOBS", 7)  # names collide across batches in flight
    template = "{prompt:10}_{index}.{ext}"  # no job id: every name is wanted by a dozen jobs
    scratch = reconcile.checkout(
        vault, ViewDefinition("scratch", tmp_path / "scratch", template, kind)
    )
    assert scratch.added == 120
    some = sorted(records(vault, "scratch"))
    gone_oid = records(vault, "scratch")[some[5]][0]
    os.unlink(vault.object_path(gone_oid))  # an object gone since the index was written
    started: list[int] = []

    class Counted(linkproc.ProcessLinker):
        def __init__(self, objects_root: str) -> None:
            started.append(1)
            super().__init__(objects_root)

    monkeypatch.setattr(linkproc, "ProcessLinker", Counted)
    reports = {}
    for name, threshold in (("threads", 10**9), ("process", 0)):
        monkeypatch.setattr(linkproc, "PROCESS_MIN_IMAGES", threshold)
        directory = tmp_path / name
        (directory / some[0]).parent.mkdir(parents=True)
        (directory / some[0]).write_bytes(b"the user's own file")  # in the way
        reports[name] = reconcile.checkout(vault, ViewDefinition(name, directory, template, kind))
    assert len(started) == 1  # the second checkout, and only it, used the process
    threads, process = reports["threads"], reports["process"]
    for field in ("added", "skipped", "conflicts", "adopted", "kept", "notes"):
        assert getattr(process, field) == getattr(threads, field), field
    assert threads.conflicts >= 1 and threads.skipped == 1
    assert layout(tmp_path / "process") == layout(tmp_path / "threads")
    assert records(vault, "process") == records(vault, "threads")
    if kind is LinkKind.HARDLINK:
        for relpath, (oid, _, _) in records(vault, "process").items():
            assert os.path.samefile(tmp_path / "process" / relpath, vault.object_path(oid))


def test_failures_come_back_as_the_errors_threads_raise(tmp_path: Path) -> None:
    objects = tmp_path / "vault"
    (objects / "objects" / "ab").mkdir(parents=True)
    present = objects / "objects" / "ab" / "abcd"
    present.write_bytes(b"\x89PNG\r\n\x1a\n" + b"x" * 100)
    view = tmp_path / "view"
    (view / "taken.png").parent.mkdir(parents=True)
    (view / "taken.png").write_bytes(b"the user's")
    (view / "a-file").write_bytes(b"not a folder")
    pairs = [
        (str(present), str(view / "deep" / "new.png")),
        (str(objects / "objects" / "ab" / "gone"), str(view / "missing.png")),
        (str(present), str(view / "taken.png")),
        (str(present), str(view / "a-file" / "under.png")),
        (str(present), str(view / ("x" * 300 + ".png"))),  # a name no file system takes
        (str(present), str(view / "after.png")),
    ]
    linker = linkproc.ProcessLinker(str(objects))
    try:
        linker.submit(LinkKind.COPY, pairs)
        made = linker.outcome()
    finally:
        linker.close()
    assert linker.process.returncode == 0
    assert (view / "deep" / "new.png").read_bytes() == present.read_bytes()
    new = os.stat(view / "deep" / "new.png")
    assert made.stats[:2] == [new.st_size, new.st_mtime_ns]
    kinds = [(at, type(error)) for at, error in made.failures]
    assert kinds == [
        (1, ObjectMissing),
        (2, NameTaken),
        (3, NotADirectoryError),
        (4, OSError),
    ]
    too_long = made.failures[-1][1]
    assert isinstance(too_long, OSError) and too_long.errno == 36  # ENAMETOOLONG
    assert too_long.filename == pairs[4][1]
    assert made.untried == [range(5, 6)]  # nothing is made after an error that stops it
    assert not (view / "after.png").exists()


# What a path can hold as text: any character but NUL, and the lone surrogates os.fsdecode
# makes of undecodable bytes (U+DC80-U+DCFF).
_PATH_TEXT = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\0")
    | st.characters(min_codepoint=0xDC80, max_codepoint=0xDCFF),
    min_size=1,
)


@given(st.lists(st.tuples(_PATH_TEXT, _PATH_TEXT), max_size=20), st.integers(0, 3))
def test_any_paths_and_failures_cross_the_pipe_intact(
    pairs: list[tuple[str, str]], errno_pick: int
) -> None:
    """Framing, text (lone surrogates as os.fsdecode makes them) and errors survive a round
    trip through the protocol exactly."""
    seen: list[list[tuple[str, str]]] = []

    def echo(batch: list[tuple[str, str]], targets: object) -> Made:
        seen.append(list(batch))
        made = Made(stats=[n for i in range(len(batch)) for n in (i, -i)])
        for at, (source, dest) in enumerate(batch):
            code = (2, 17, 20, 28)[(at + errno_pick) % 4]
            made.failures.append((at, OSError(code, "why", dest, None, source)))
        made.failures.append((0, ObjectMissing(batch[0][0]) if batch else NameTaken("x")))
        made.failures.append((0, UsageError("hard links need…", hint="use --link copy")))
        return made

    request = io.BytesIO()
    for kind in (0, 1):
        payload = (
            b"/vault"
            if kind == 0
            else ("".join(f"{s}\0{d}\0" for s, d in pairs)).encode("utf-8", "surrogateescape")
        )
        request.write(linkproc._REQUEST.pack(kind, len(payload)) + payload)
    request.seek(0)
    answer = io.BytesIO()
    real = linkproc.MAKERS[LinkKind.SYMLINK]
    linkproc.MAKERS[LinkKind.SYMLINK] = echo
    try:
        assert linkproc.serve(request, answer) == 0
    finally:
        linkproc.MAKERS[LinkKind.SYMLINK] = real
    assert seen == [pairs]
    body = answer.getvalue()
    stats_size, failures_size = linkproc._ANSWER.unpack_from(body)
    start = linkproc._ANSWER.size
    stats = memoryview(body[start : start + stats_size]).cast("q").tolist()
    made = linkproc._decode(stats, body[start + stats_size :])
    assert len(body) == start + stats_size + failures_size
    assert made.stats == [n for i in range(len(pairs)) for n in (i, -i)]
    assert len(made.failures) == len(pairs) + 2
    for i, ((at, error), (source, dest)) in enumerate(zip(made.failures, pairs, strict=False)):
        assert at == i and isinstance(error, OSError)
        assert type(error) is type(OSError(error.errno, "")), error  # FileNotFoundError …
        assert (error.filename, error.filename2, error.strerror) == (dest, source, "why")
    usage = made.failures[-1][1]
    assert isinstance(usage, UsageError) and usage.hint == "use --link copy"


# -- the command: killed, interrupted, full ------------------------------------------------------


@pytest.fixture(scope="module")
def big_vault(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("linkproc") / "vault"
    with Vault.init(path) as vault, vault.writer("test") as writer:
        for n in range(BIG_JOBS):
            oids = [writer.put_media(png_bytes(n * 4 + i, size=32)) for i in range(4)]
            writer.add_job(record_json(f"job-{n:05d}", f"study {n % 97}"), oids)
    with Vault.open(path) as vault:
        vault.current_index()  # built once, not by every checkout
    return path


def start_checkout(vault: Path, directory: Path, link: str) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MJVAULT_")}
    command = [sys.executable, "-m", "mjvault", "--vault", str(vault), "checkout"]
    return subprocess.Popen(
        [*command, str(directory), "--link", link, "--template", TEMPLATE],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,  # its own process group, as a terminal's foreground job
    )


def link_process_of(parent: int, timeout: float = 60) -> int:
    """The pid of ``parent``'s link process, once it runs."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
                command = Path(f"/proc/{entry}/cmdline").read_bytes()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == parent and b"linkproc.py" in command:
                return int(entry)
        time.sleep(0.002)
    raise AssertionError("no link process started")


def the_only_line(stderr: bytes) -> str:
    err = stderr.decode()
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    return lines[0]


def assert_state_names_only_real_files(vault: Path, directory: Path) -> None:
    """Whatever the failed run recorded exists (files it made and did not record are fine:
    the rerun takes them as the view's own)."""
    with Vault.open(vault) as opened:
        view = ViewRegistry(opened).find_by_directory(directory.resolve())
        if view is None:
            return
        for relpath in records(opened, view.name):
            assert os.path.lexists(directory / relpath), relpath


def rerun_completes(vault: Path, directory: Path, link: str, reference: Path) -> None:
    done = run_cli(
        "--vault", str(vault), "--json", "checkout", str(directory), "--link", link,
        "--template", TEMPLATE,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr.decode()
    report = json.loads(done.stdout)
    assert (report["conflicts"], report["skipped"], report["kept"]) == (0, 0, 0)
    assert layout(directory) == layout(reference)
    verified = run_cli("--vault", str(vault), "verify", "--views")
    assert verified.returncode == 0, verified.stdout.decode() + verified.stderr.decode()


@pytest.fixture(scope="module")
def references(big_vault: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A clean checkout per link type, made through the link process, to compare with."""
    root = tmp_path_factory.mktemp("references")
    for link in ("symlink", "copy"):
        done = run_cli(
            "--vault", str(big_vault), "checkout", str(root / link), "--link", link,
            "--template", TEMPLATE,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr.decode()
        assert len(layout(root / link)) == BIG_JOBS * 4
    yield root


@pytest.mark.slow
@pytest.mark.parametrize("link", ["symlink", "copy"])
def test_a_killed_link_process_fails_the_checkout_in_one_line_and_a_rerun_repairs(
    big_vault: Path, references: Path, tmp_path: Path, link: str
) -> None:
    directory = tmp_path / f"killed-{link}"
    checkout = start_checkout(big_vault, directory, link)
    os.kill(link_process_of(checkout.pid), signal.SIGKILL)
    _, err = checkout.communicate(timeout=120)
    assert checkout.returncode == 1, err.decode()
    line = the_only_line(err)
    assert "link process stopped (killed by signal 9)" in line, line
    assert "rerun `mjvault checkout`" in line, line
    assert_state_names_only_real_files(big_vault, directory)
    rerun_completes(big_vault, directory, link, references / link)


@pytest.mark.slow
def test_ctrl_c_stops_the_checkout_and_its_link_process(
    big_vault: Path, references: Path, tmp_path: Path
) -> None:
    directory = tmp_path / "interrupted"
    checkout = start_checkout(big_vault, directory, "symlink")
    helper = link_process_of(checkout.pid)
    deadline = time.monotonic() + 60
    while not any(directory.rglob("*.png")) and time.monotonic() < deadline:
        time.sleep(0.002)
    os.killpg(checkout.pid, signal.SIGINT)  # what the terminal sends its foreground job
    _, err = checkout.communicate(timeout=120)
    if checkout.returncode == 0:
        pytest.skip("the checkout finished before Ctrl-C reached it")
    assert checkout.returncode == 130, err.decode()
    assert "interrupted" in the_only_line(err)
    assert not Path(f"/proc/{helper}").exists()  # ended and reaped, never left behind
    assert_state_names_only_real_files(big_vault, directory)
    rerun_completes(big_vault, directory, "symlink", references / "symlink")


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[SmallFs]:
    with small_fs(tmp_path / "small", size="64m") as fs:
        yield fs


@pytest.mark.slow
def test_a_full_disk_stops_a_copy_checkout_in_one_line_and_a_rerun_finishes(
    big_vault: Path, references: Path, disk: SmallFs
) -> None:
    # Room for about half the copies (each takes a page of the tmpfs, and a folder's entries).
    ballast = disk.path / ".ballast"
    ballast.write_bytes(b"\0" * (disk.free_bytes() - (BIG_JOBS * 2) * 4096))
    directory = disk.path / "full"
    done = run_cli(
        "--vault", str(big_vault), "checkout", str(directory), "--link", "copy",
        "--template", TEMPLATE,
    )  # fmt: skip
    assert done.returncode == 1, done.stderr.decode()
    line = the_only_line(done.stderr)
    assert line.startswith("mjvault: error: No space left on device"), line
    assert str(directory) in line and str(big_vault / "objects") not in line, line
    assert any(directory.rglob("*.png"))  # it stopped half-way, not at the start
    assert_state_names_only_real_files(big_vault, directory)
    ballast.unlink()
    rerun_completes(big_vault, directory, "copy", references / "copy")


def test_copies_by_several_threads_keep_every_pair_s_stats_when_the_disk_fills(
    tmp_path: Path, disk: SmallFs
) -> None:
    """Each copier stops at the disk's end; the batch's stats still hold two numbers a pair,
    so every copy made is recorded with its own size and time, not another file's."""
    objects = tmp_path / "objects"
    objects.mkdir()
    pairs: list[tuple[str, str]] = []
    for number in range(40):
        source = objects / f"{number:02d}"
        source.write_bytes(bytes([number]) * (256 * 1024 + number))
        pairs.append((str(source), str(disk.path / f"copy-{number:02d}")))
    # Room for about half the copies, so each share of the batch stops part way.
    ballast = disk.path / ".ballast"
    ballast.write_bytes(b"\0" * (disk.free_bytes() - 20 * (256 * 1024 + 4096)))
    linker = linkproc.ThreadLinker(str(objects), copiers=3)
    try:
        linker.submit(LinkKind.COPY, pairs)
        made = linker.outcome()
    finally:
        linker.close()
    assert made.failures and made.untried
    assert len(made.stats) == 2 * len(pairs)
    not_made = {at for at, _ in made.failures} | {at for r in made.untried for at in r}
    assert 0 < len(not_made) < len(pairs)
    for position, (_, dest) in enumerate(pairs):
        if position in not_made:
            continue
        on_disk = os.stat(dest)
        assert made.stats[2 * position : 2 * position + 2] == [
            on_disk.st_size,
            on_disk.st_mtime_ns,
        ]


def test_a_frozen_build_keeps_the_threads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The standalone executable's sys.executable is mjvault itself, which cannot run this
    module as a script: a big checkout there makes its files with threads."""
    monkeypatch.setattr(linkproc, "PROCESS_MIN_IMAGES", 0)
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    linker = linkproc.start_linker(str(tmp_path), 2, 10)
    try:
        assert isinstance(linker, linkproc.ThreadLinker)
    finally:
        linker.close()
