#!/usr/bin/env python3
"""``mjvault export --images``: images/s and MB/s per format against a bare Pillow loop.

    python scripts/bench/bench_export_images.py [--images 24] [--runs 3] [--max-size 1024]
                                                [--formats webp,avif,jpeg,png]
                                                [--workdir /tmp/mjvault-bench-export-images]

A vault of ``--images`` one-image jobs (1456x816 PNGs, Midjourney's 16:9 upscale size: a
smooth picture with fine grain, ~1.5 MB each) is built once, its originals also written as
plain files. Then, for each format, in alternating rounds, each in a child process of its own:

* ``anchor``: the bare loop over the original files, open -> exif_transpose -> thumbnail ->
  save, one after another, nothing else (no vault, no names, no state);
* ``export 1w`` / ``export 2w``: :func:`mjvault.find.export_images.export_images` (what
  ``mjvault export --images`` calls) with 1 and 2 worker threads, into a fresh DIR;
* and once, ``cp -r`` of the originals (the floor: bytes moved, nothing decoded).

Each line: best and median wall seconds of ``--runs``, images/s and MB/s (original bytes read
per second) at the best, peak RSS of the child. Then a rerun over a finished DIR (what a second
``export --images`` costs when nothing changed).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
WIDTH, HEIGHT = 1456, 816

BUILD = """
import io, random, sys
from pathlib import Path
from PIL import Image
from mjvault import Vault
sys.path.insert(0, {root!r})
from tests.conftest import record_json
count, src, vault_path = {count}, Path({src!r}), Path({vault!r})
src.mkdir(parents=True)
with Vault.init(vault_path) as vault, vault.writer("bench") as writer:
    for n in range(count):
        rng = random.Random(n)
        tile = Image.frombytes("RGB", (6, 4), rng.randbytes(6 * 4 * 3))
        picture = tile.resize(({w}, {h}), Image.Resampling.BICUBIC)
        grain = Image.effect_noise(({w}, {h}), 40).convert("RGB")
        picture = Image.blend(picture, grain, 0.12)
        out = io.BytesIO()
        picture.save(out, "PNG")
        data = out.getvalue()
        (src / f"{{n:04d}}.png").write_bytes(data)
        record = record_json(f"bench-{{n:04d}}", f"a bench picture number {{n}} --ar 16:9",
                             type="upscale")
        writer.add_job(record, [writer.put_media(data)])
"""

ANCHOR = """
import sys
from pathlib import Path
from PIL import Image, ImageOps
src, out, fmt, size, quality = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
out.mkdir(parents=True)
names = {{"webp": "WEBP", "avif": "AVIF", "jpeg": "JPEG", "png": "PNG"}}
for path in sorted(src.iterdir()):
    with Image.open(path) as image:
        image = ImageOps.exif_transpose(image)
        image.thumbnail((size, size), Image.Resampling.LANCZOS, 3.0)
        args = {{}} if fmt == "png" else {{"quality": quality}}
        image.save(out / (path.stem + "." + fmt), names[fmt], **args)
"""

EXPORT = """
import json, sys
from pathlib import Path
from mjvault import Vault
from mjvault.find.export_images import ImageSettings, export_images
vault_path, out, fmt, size, quality, workers = sys.argv[1:7]
with Vault.open(Path(vault_path)) as vault:
    report = export_images(vault, Path(out), ImageSettings(fmt=fmt, quality=int(quality),
                           max_size=int(size), embed=True), workers=int(workers),
                           template="{{job_id}}_{{index}}.{{ext}}", query=None)
print(json.dumps(report.to_json()))
"""


def measured(command: list[str]) -> tuple[float, int, str]:
    """Wall seconds, peak RSS (KiB: the kernel's accounting of this child alone), stdout.
    The child's CPU seconds (user + system) go to CPU[-1]: on a shared machine they show
    the work done, whatever the other load took of the wall time."""
    import time

    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert process.stdout is not None and process.stderr is not None
    out = process.stdout.read()
    err = process.stderr.read()
    _, status, usage = os.wait4(process.pid, 0)
    elapsed = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"{command[:4]} failed: {err.decode(errors='replace')[-800:]}")
    CPU.append(usage.ru_utime + usage.ru_stime)
    return elapsed, usage.ru_maxrss, out.decode()


CPU: list[float] = []


def line(
    name: str, seconds: list[float], rss: list[int], images: int, mb: float, cpu: list[float]
) -> str:
    best = min(seconds)
    return (
        f"  {name:<12} best {best:6.2f} s  median {statistics.median(seconds):6.2f} s  "
        f"{images / best:6.1f} images/s  {mb / best:6.1f} MB/s  CPU {min(cpu):6.2f} s  "
        f"peak RSS {max(rss) / 1024:6.1f} MB"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--images", type=int, default=24)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--max-size", type=int, default=1024)
    parser.add_argument("--quality", type=int, default=85)
    parser.add_argument("--formats", default="webp,avif,jpeg,png")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/mjvault-bench-export-images"))
    parser.add_argument("--keep", action="store_true", help="keep the vault and files after")
    args = parser.parse_args()
    work = args.workdir
    src, vault = work / f"src-{args.images}", work / f"vault-{args.images}"
    if not vault.exists():
        shutil.rmtree(src, ignore_errors=True)
        script = BUILD.format(root=str(ROOT), count=args.images, src=str(src), vault=str(vault),
                              w=WIDTH, h=HEIGHT)  # fmt: skip
        subprocess.run([sys.executable, "-c", script], check=True, cwd=ROOT)
    mb = sum(p.stat().st_size for p in src.iterdir()) / 1e6
    print(f"{args.images} images of {WIDTH}x{HEIGHT} PNG ({mb:.1f} MB), to at most "
          f"{args.max_size} px, quality {args.quality}, {args.runs} alternating rounds")  # fmt: skip
    out = work / "out"
    seconds: list[float] = []
    rss: list[int] = []
    for _ in range(args.runs):
        shutil.rmtree(out, ignore_errors=True)
        s, r, _ = measured(["cp", "-r", str(src), str(out)])
        seconds.append(s)
        rss.append(r)
    print(line("cp -r", seconds, rss, args.images, mb, CPU[-args.runs :]))
    for fmt in args.formats.split(","):
        print(f"{fmt}:")
        results: dict[str, tuple[list[float], list[int]]] = {}
        cpu: dict[str, list[float]] = {}
        sizes: dict[str, int] = {}
        for _ in range(args.runs):
            for name in ("anchor", "export 1w", "export 2w"):
                shutil.rmtree(out, ignore_errors=True)
                if name == "anchor":
                    command = [sys.executable, "-c", ANCHOR.format(), str(src), str(out), fmt,
                               str(args.max_size), str(args.quality)]  # fmt: skip
                else:
                    workers = name[-2]
                    command = [sys.executable, "-c", EXPORT.format(), str(vault), str(out), fmt,
                               str(args.max_size), str(args.quality), workers]  # fmt: skip
                s, r, text = measured(command)
                if name != "anchor":
                    report = json.loads(text)
                    assert report["images_written"] == args.images, report
                sizes[name] = sum(
                    p.stat().st_size for p in out.rglob("*") if not p.name.startswith(".")
                )
                cpu.setdefault(name, []).append(CPU[-1])
                results.setdefault(name, ([], []))[0].append(s)
                results[name][1].append(r)
        for name, (secs, rsss) in results.items():
            text = line(name, secs, rsss, args.images, mb, cpu[name])
            print(f"{text}  out {sizes[name] / 1e6:.2f} MB")
        anchor = min(results["anchor"][0])
        print(f"  export 1w / anchor {min(results['export 1w'][0]) / anchor:.2f}x, "
              f"2w / 1w {min(results['export 2w'][0]) / min(results['export 1w'][0]):.2f}x "
              "(best vs best)")  # fmt: skip
    # The fixed cost: start-up, the vault opened, a query that selects nothing.
    startup: list[float] = []
    for _ in range(args.runs):
        shutil.rmtree(out, ignore_errors=True)
        nothing = [sys.executable, "-c", EXPORT.replace("query=None", "query='zzqx'").format(),
                   str(vault), str(out), fmt, str(args.max_size), str(args.quality), "1"]  # fmt: skip
        s, r, text = measured(nothing)
        startup.append(s)
    print(
        f"start-up (no image selected): best {min(startup):.2f} s, CPU {min(CPU[-args.runs :]):.2f} s"
    )
    measured([sys.executable, "-c", EXPORT.format(), str(vault), str(out), fmt,
              str(args.max_size), str(args.quality), "2"])  # fmt: skip
    # A second run over the last DIR: every file found with the same settings.
    rerun = [sys.executable, "-c", EXPORT.format(), str(vault), str(out), fmt,
             str(args.max_size), str(args.quality), "2"]  # fmt: skip
    s, r, text = measured(rerun)
    report = json.loads(text)
    print(f"rerun ({fmt}, nothing changed): {s:.2f} s, {report['images_kept']} kept, "
          f"{report['images_written']} written, peak RSS {r / 1024:.1f} MB")  # fmt: skip
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
