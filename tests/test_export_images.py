"""``mjvault export --images DIR``: converted, resized copies that open in every format, carry
the prompt inside when asked, never touch the vault, never leave DIR, and are not made twice."""

from __future__ import annotations

import hashlib
import io
import os
import tracemalloc
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from config_helpers import isolate
from config_helpers import run_cli as run_in_process
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image, ImageCms, features

from mjvault import Vault
from mjvault.errors import UsageError
from mjvault.find.export_images import (
    IMAGE_FORMATS,
    STATE_FILE,
    EncodeFailed,
    ImageSettings,
    convert,
    export_images,
    image_template,
)
from mjvault.model import job_from_json
from mjvault.testing.images import make_mp4, make_png, make_webp
from tests.conftest import CHEAP_KDF, PASSPHRASE, record_json

PROMPT = 'a fox <in> "snow" & ünïcode 狐'
TEMPLATE = "{job_id}_{index}.{ext}"
SRGB = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
DC = "{http://purl.org/dc/elements/1.1/}"
RDF = "{http://www.w3.org/1999/02/22-rdf-syntax-ns#}"


def sideways_jpeg() -> bytes:
    """An 80x40 JPEG stored sideways (EXIF orientation 6: shown 40x80) with an ICC profile."""
    image = Image.new("RGB", (80, 40), (200, 30, 30))
    image.paste((30, 30, 200), (0, 0, 20, 40))  # a blue band on the stored left
    exif = Image.Exif()
    exif[0x0112] = 6
    out = io.BytesIO()
    image.save(out, "JPEG", quality=90, exif=exif, icc_profile=SRGB)
    return out.getvalue()


def fill(vault: Vault) -> dict[str, list[tuple[int, int]]]:
    """A grid of four PNGs (one missing), a sideways JPEG, a WebP, a video; their upright sizes."""
    with vault.writer("test") as writer:
        grid = [writer.put_media(make_png(i, 200, 120)) for i in range(3)]
        writer.add_job(record_json("grid-1", PROMPT), [grid[0], grid[1], None, grid[2]])
        writer.add_job(
            record_json("upscale-2", "a sideways heron", type="upscale"),
            [writer.put_media(sideways_jpeg())],
        )
        writer.add_job(
            record_json("webp-3", "a webp owl", type="upscale"),
            [writer.put_media(make_webp(7, 150, 90))],
        )
        writer.add_job(
            record_json("video-4", "a moving fox", type="video"),
            [writer.put_media(make_mp4(4))],
        )
    return {
        "grid-1": [(200, 120)] * 3,
        "upscale-2": [(40, 80)],
        "webp-3": [(150, 90)],
    }


def formats() -> list[str]:
    return [f for f in IMAGE_FORMATS if f != "avif" or features.check("avif")]


def embedded_prompt(path: Path, fmt: str) -> list[str]:
    """The prompt as each place inside the file holds it."""
    with Image.open(path) as image:
        if fmt == "png":
            return [str(image.info["Description"]), str(image.info["prompt"])]
        # EXIF ImageDescription is UTF-8 bytes; Pillow hands them over as Latin-1 text.
        description = str(image.getexif()[0x010E]).encode("latin-1").decode("utf-8")
        xmp = image.info.get("xmp")
    assert isinstance(xmp, bytes), f"no XMP in the {fmt}"
    root = ET.fromstring(xmp.decode("utf-8").split("?>", 1)[1].rsplit("<?xpacket", 1)[0])
    xmp_text = root.find(f".//{DC}description/{RDF}Alt/{RDF}li")
    assert xmp_text is not None
    return [description, str(xmp_text.text)]


def objects_hashed(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted((root / "objects").rglob("*"))
        if p.is_file()
    }


@pytest.mark.parametrize("fmt", formats())
def test_every_format_round_trips_with_the_prompt_inside(tmp_path: Path, fmt: str) -> None:
    with Vault.init(tmp_path / "vault") as vault:
        sizes = fill(vault)
        before = objects_hashed(tmp_path / "vault")
        chosen = ImageSettings(fmt=fmt, quality=70, max_size=100, embed=True)
        report = export_images(vault, tmp_path / "out", chosen, template=TEMPLATE)
    assert objects_hashed(tmp_path / "vault") == before  # the vault is only read
    assert (report.images_written, report.images_missing, report.not_images) == (5, 1, 1)
    assert not report.problems
    ext = chosen.ext
    written = sorted(p.name for p in (tmp_path / "out").iterdir() if p.name != STATE_FILE)
    assert written == sorted(
        [f"grid-1_{i}.{ext}" for i in (0, 1, 3)] + [f"upscale-2_0.{ext}", f"webp-3_0.{ext}"]
    )
    for job_id, upright in sizes.items():
        for path, (w, h) in zip(
            sorted((tmp_path / "out").glob(f"{job_id}_*")), upright, strict=True
        ):
            with Image.open(path) as image:
                assert image.format == {"jpeg": "JPEG", "png": "PNG"}.get(fmt, fmt.upper())
                image.load()
                scale = min(1.0, 100 / max(w, h))
                assert max(image.size) <= 100
                assert image.size == pytest.approx((w * scale, h * scale), abs=1)
            prompt = PROMPT if job_id == "grid-1" else None
            if prompt:
                assert embedded_prompt(path, fmt) == [prompt, prompt]
    # The sideways JPEG comes out upright (the blue band on top), its profile kept.
    with Image.open(tmp_path / "out" / f"upscale-2_0.{ext}") as upright_image:
        assert upright_image.size == (40, 80)  # within 100: never enlarged
        assert upright_image.info.get("icc_profile") == SRGB
        top = upright_image.convert("RGB").getpixel((20, 5))
        bottom = upright_image.convert("RGB").getpixel((20, 75))
        assert isinstance(top, tuple) and isinstance(bottom, tuple)
        assert top[2] > 150 > top[0] and bottom[0] > 150 > bottom[2]
        assert upright_image.getexif().get(0x0112) in (None, 1)


def test_without_embedding_no_prompt_and_never_enlarged(tmp_path: Path) -> None:
    job = job_from_json(record_json("x", PROMPT))
    small = make_png(3, 60, 30)
    made = convert(small, ImageSettings(fmt="webp", max_size=4000), job)
    assert made is not None
    with Image.open(io.BytesIO(made)) as image:
        assert image.size == (60, 30)
        assert "xmp" not in image.info and 0x010E not in image.getexif()
    assert convert(b"not an image", ImageSettings(), job) is None


def test_an_encrypted_vault_exports_files_kept_private(tmp_path: Path) -> None:
    with Vault.init(
        tmp_path / "vault", encrypt=True, passphrase=PASSPHRASE, kdf=CHEAP_KDF
    ) as vault:
        fill(vault)
        report = export_images(
            vault, tmp_path / "out", ImageSettings(fmt="jpeg", embed=True), template=TEMPLATE
        )
    assert report.images_written == 5 and not report.problems
    for path in (tmp_path / "out").iterdir():
        assert path.stat().st_mode & 0o777 == 0o600, path
        if path.name != STATE_FILE:
            with Image.open(path) as image:
                image.verify()
    assert (tmp_path / "out").stat().st_mode & 0o777 == 0o700
    assert embedded_prompt(tmp_path / "out" / "grid-1_0.jpg", "jpeg")[0] == PROMPT


def test_a_second_run_writes_nothing_new_until_something_changes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    isolate(monkeypatch, tmp_path)
    with Vault.init(tmp_path / "vault") as vault:
        fill(vault)
    out = tmp_path / "out"
    args = ("--vault", str(tmp_path / "vault"), "--json", "export", "--images", str(out))
    first = run_in_process(capsys, *args, "--max-size", "64")
    assert first.code == 0, first.err
    summary = first.json()
    assert (summary["images_written"], summary["images_kept"]) == (5, 0)
    assert summary["format"] == "webp" and summary["jobs"] == 4
    # The default template: dated folders, the prompt, the job id and the index.
    names = sorted(str(p.relative_to(out)) for p in out.rglob("*.webp"))
    assert names[0] == "2023/2023-05/a fox in snow & ünïcode 狐_grid-1_0.webp"
    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("*.webp")}

    again = run_in_process(capsys, *args, "--max-size", "64").json()
    assert (again["images_written"], again["images_kept"]) == (0, 5)
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.webp")} == stamps

    # A file removed or changed by hand is made again; only it.
    gone, changed = sorted(stamps)[:2]
    gone.unlink()
    changed.write_bytes(b"edited")
    third = run_in_process(capsys, *args, "--max-size", "64").json()
    assert (third["images_written"], third["images_kept"]) == (2, 3)
    with Image.open(changed) as image:
        assert max(image.size) <= 64

    # Other settings are other files: all made again.
    fourth = run_in_process(capsys, *args, "--max-size", "32").json()
    assert (fourth["images_written"], fourth["images_kept"]) == (5, 0)


def test_a_query_selects_the_jobs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    isolate(monkeypatch, tmp_path)
    with Vault.init(tmp_path / "vault") as vault:
        fill(vault)
    out = tmp_path / "out"
    result = run_in_process(
        capsys,
        *("--vault", str(tmp_path / "vault"), "export", "heron"),
        *("--images", str(out), "--format", "png", "--template", TEMPLATE),
    )
    assert result.code == 0, result.err
    assert "1 written" in result.out
    assert sorted(p.name for p in out.iterdir() if p.name != STATE_FILE) == ["upscale-2_0.png"]
    # --json after the command's own words too; the same run again keeps the file.
    again = run_in_process(
        capsys,
        *("--vault", str(tmp_path / "vault"), "export", "heron"),
        *("--images", str(out), "--format", "png", "--template", TEMPLATE, "--json"),
    )
    assert (again.json()["images_kept"], again.json()["jobs"]) == (1, 1)


@pytest.mark.parametrize(
    "template",
    [
        "../{job_id}_{index}.{ext}",
        "/tmp/{job_id}_{index}.{ext}",
        "a/../../{job_id}_{index}.{ext}",
        "{date:%Y/../..}/{job_id}_{index}",
        "C:/{job_id}_{index}",
        "{job_id}.{ext}",  # two images of a job would share a name
    ],
)
def test_a_hostile_template_is_refused_in_one_line_and_writes_nothing(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    template: str,
) -> None:
    isolate(monkeypatch, tmp_path)
    with Vault.init(tmp_path / "vault") as vault:
        fill(vault)
    out = tmp_path / "deep" / "out"
    result = run_in_process(
        capsys,
        *("--vault", str(tmp_path / "vault"), "export"),
        *("--images", str(out), "--template", template),
    )
    assert result.code != 0
    assert len(result.err.strip().splitlines()) == 1, result.err
    assert "template" in result.err
    assert not (tmp_path / "deep").exists()
    with pytest.raises(UsageError):
        image_template(template)


@pytest.mark.parametrize(
    ("options", "words"),
    [
        (("--quality", "0"), "--quality"),
        (("--quality", "101"), "--quality"),
        (("--quality", "high"), "--quality"),
        (("--max-size", "0"), "--max-size"),
        (("--max-size", "-5"), "--max-size"),
        (("--max-size", "big"), "--max-size"),
        (("--format", "csv"), "--format"),
    ],
)
def test_bad_image_options_are_one_line(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    options: tuple[str, str],
    words: str,
) -> None:
    isolate(monkeypatch, tmp_path)
    Vault.init(tmp_path / "vault").close()
    result = run_in_process(
        capsys,
        *("--vault", str(tmp_path / "vault"), "export", "--images", str(tmp_path / "out")),
        *options,
    )
    assert result.code != 0
    assert len(result.err.strip().splitlines()) == 1, result.err
    assert words in result.err
    assert not (tmp_path / "out").exists()


def test_image_options_without_images_are_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    isolate(monkeypatch, tmp_path)
    Vault.init(tmp_path / "vault").close()
    at = ("--vault", str(tmp_path / "vault"), "export")
    for options in (("--format", "webp"), ("--quality", "80"), ("--embed-metadata",)):
        result = run_in_process(capsys, *at, *options)
        assert result.code != 0 and len(result.err.strip().splitlines()) == 1, result.err
    # The records' formats keep working as before.
    assert run_in_process(capsys, *at, "--format", "csv").code == 0


def test_a_link_planted_in_dir_is_replaced_never_written_through(tmp_path: Path) -> None:
    outside = tmp_path / "outside.webp"
    outside.write_bytes(b"not yours to change")
    out = tmp_path / "out"
    out.mkdir()
    os.symlink(outside, out / "grid-1_0.webp")
    with Vault.init(tmp_path / "vault") as vault:
        fill(vault)
        report = export_images(vault, out, ImageSettings(), template=TEMPLATE)
    assert report.images_written == 5
    assert outside.read_bytes() == b"not yours to change"
    assert not (out / "grid-1_0.webp").is_symlink()


def test_the_export_is_refused_inside_the_vault(tmp_path: Path) -> None:
    with Vault.init(tmp_path / "vault") as vault, pytest.raises(UsageError):
        export_images(vault, tmp_path / "vault" / "pics", ImageSettings(), template=TEMPLATE)


def test_an_interrupted_run_leaves_whole_files_and_the_next_one_finishes(tmp_path: Path) -> None:
    out = tmp_path / "out"
    done = 0

    def stop_after_two() -> None:
        nonlocal done
        done += 1
        if done == 2:
            raise KeyboardInterrupt

    with Vault.init(tmp_path / "vault") as vault:
        fill(vault)
        chosen = ImageSettings(fmt="png")
        with pytest.raises(KeyboardInterrupt):
            export_images(vault, out, chosen, template=TEMPLATE, on_image=stop_after_two)
        first = [p for p in out.iterdir() if p.name != STATE_FILE]
        for path in first:
            assert not path.name.endswith(".partial"), path
            with Image.open(path) as image:
                image.verify()
        report = export_images(vault, out, chosen, template=TEMPLATE)
    assert report.images_written + report.images_kept == 5 and report.images_kept >= 1
    assert len([p for p in out.iterdir() if p.name != STATE_FILE]) == 5


def test_a_pillow_without_avif_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    isolate(monkeypatch, tmp_path)
    Vault.init(tmp_path / "vault").close()
    monkeypatch.setattr(features, "check", lambda name: name != "avif")
    result = run_in_process(
        capsys,
        *("--vault", str(tmp_path / "vault"), "export"),
        *("--images", str(tmp_path / "out"), "--format", "avif"),
    )
    assert result.code == 2
    assert len(result.err.strip().splitlines()) == 1 and "AVIF" in result.err, result.err
    assert not (tmp_path / "out").exists()


def test_a_damaged_state_is_started_again_and_a_linked_one_refused(tmp_path: Path) -> None:
    out = tmp_path / "out"
    with Vault.init(tmp_path / "vault") as vault:
        fill(vault)
        export_images(vault, out, ImageSettings(), template=TEMPLATE)
        (out / STATE_FILE).write_bytes(b"this is not a database" * 100)
        report = export_images(vault, out, ImageSettings(), template=TEMPLATE)
        assert (report.images_written, report.images_kept) == (5, 0)
        again = export_images(vault, out, ImageSettings(), template=TEMPLATE)
        assert (again.images_written, again.images_kept) == (0, 5)
        elsewhere = tmp_path / "elsewhere.sqlite"
        (out / STATE_FILE).unlink()
        os.symlink(elsewhere, out / STATE_FILE)
        with pytest.raises(UsageError, match="not a regular file"):
            export_images(vault, out, ImageSettings(), template=TEMPLATE)
    assert not elsewhere.exists()


def _peak(vault: Vault, out: Path) -> int:
    tracemalloc.start()
    try:
        report = export_images(vault, out, ImageSettings(fmt="jpeg"), template=TEMPLATE)
        assert report.images_written == vault.current_index().job_count()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_memory_does_not_grow_with_the_selection(tmp_path: Path) -> None:
    def add(start: int, count: int) -> None:
        with vault.writer("test") as writer:
            shared = [writer.put_media(make_png(i, 24, 24)) for i in range(4)]
            for n in range(start, start + count):
                writer.add_job(record_json(f"job-{n:04d}", f"fox {n}"), [shared[n % 4]])

    with Vault.init(tmp_path / "vault") as vault:
        add(0, 60)
        _peak(vault, tmp_path / "warm")  # first imports and caches, not the selection's
        small = _peak(vault, tmp_path / "small")
        add(60, 180)
        large = _peak(vault, tmp_path / "large")
    # Four times the images: the run holds a window of them, counters and a table on disk;
    # 180 more images kept at even a path's 330 bytes each would show.
    assert large < small + 60_000, (small, large)


def test_a_damaged_object_is_named_and_the_rest_exported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    isolate(monkeypatch, tmp_path)
    with Vault.init(tmp_path / "vault") as vault:
        fill(vault)
        (damaged,) = vault.entry("webp-3").images
        assert damaged is not None
        path = vault.store.path(damaged)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 1
    path.chmod(0o644)
    path.write_bytes(bytes(data))
    out = tmp_path / "out"
    result = run_in_process(
        capsys,
        *("--vault", str(tmp_path / "vault"), "--json", "export"),
        *("--images", str(out), "--template", TEMPLATE),
    )
    assert result.code == 4, result.err
    summary = result.json()
    assert summary["images_written"] == 4 and summary["problem_count"] == 1
    assert "webp-3" in summary["problems"][0]
    assert not list(out.glob("webp-3*"))


@settings(max_examples=25, deadline=None)
@given(
    width=st.integers(1, 300),
    height=st.integers(1, 300),
    max_size=st.integers(1, 400),
    fmt=st.sampled_from(["webp", "jpeg", "png"]),
    orientation=st.sampled_from([1, 3, 6, 8]),
)
def test_the_long_side_fits_never_grows_and_the_shape_holds(
    width: int, height: int, max_size: int, fmt: str, orientation: int
) -> None:
    exif = Image.Exif()
    exif[0x0112] = orientation
    source = io.BytesIO()
    Image.new("RGB", (width, height), (10, 200, 90)).save(source, "PNG", exif=exif)
    made = convert(source.getvalue(), ImageSettings(fmt=fmt, max_size=max_size))
    assert made is not None
    upright = (height, width) if orientation in (6, 8) else (width, height)
    with Image.open(io.BytesIO(made)) as image:
        w, h = image.size
    assert max(w, h) <= max(max_size, 1) and w <= upright[0] and h <= upright[1]
    if max(upright) <= max_size:
        assert (w, h) == upright  # never enlarged, never changed when it fits
    else:
        scale = max_size / max(upright)
        assert abs(w - upright[0] * scale) <= 1 and abs(h - upright[1] * scale) <= 1


def test_a_cmyk_jpeg_drops_its_cmyk_profile_when_converted(tmp_path: Path) -> None:
    source = io.BytesIO()
    Image.new("CMYK", (40, 30), (0, 255, 255, 0)).save(source, "JPEG", icc_profile=b"fake cmyk")
    made = convert(source.getvalue(), ImageSettings(fmt="webp"))
    assert made is not None
    with Image.open(io.BytesIO(made)) as image:
        assert image.mode == "RGB" and "icc_profile" not in image.info
        red = image.getpixel((20, 15))
        assert isinstance(red, tuple) and red[0] > 200 > max(red[1], red[2]) + 100
    kept = convert(source.getvalue(), ImageSettings(fmt="jpeg"))
    assert kept is not None
    with Image.open(io.BytesIO(kept)) as image:
        assert image.mode == "CMYK" and image.info.get("icc_profile") == b"fake cmyk"


def wide_png(width: int, height: int) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), (30, 120, 200)).save(out, "PNG")
    return out.getvalue()


@pytest.mark.parametrize(
    ("fmt", "width"), [("webp", 17000), ("jpeg", 65600), ("avif", 70000)], ids=str
)
def test_an_image_the_format_cannot_hold_is_a_problem_not_a_non_image(fmt: str, width: int) -> None:
    if fmt not in formats():
        pytest.skip("this Pillow has no AVIF")
    with pytest.raises(EncodeFailed, match=fmt):
        convert(wide_png(width, 2), ImageSettings(fmt=fmt))
    assert convert(b"no image at all", ImageSettings(fmt=fmt)) is None  # that one is None


def test_an_encoder_failure_is_named_and_exits_4(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    isolate(monkeypatch, tmp_path)
    with Vault.init(tmp_path / "vault") as vault:
        fill(vault)
        with vault.writer("wide") as writer:
            writer.add_job(
                record_json("wide-5", "a long banner"), [writer.put_media(wide_png(17000, 4))]
            )
    out = tmp_path / "out"
    result = run_in_process(
        capsys,
        *("--vault", str(tmp_path / "vault"), "--json", "export"),
        *("--images", str(out), "--format", "webp", "--template", TEMPLATE),
    )
    assert result.code == 4, result.err
    summary = result.json()
    assert summary["problem_count"] == 1 and "wide-5" in summary["problems"][0]
    assert "webp" in summary["problems"][0] and summary["not_images"] == 1  # the video alone
    assert summary["images_written"] == 5 and not list(out.glob("wide-5*"))


@pytest.mark.parametrize("fmt", ["webp", "jpeg", "avif", "png"])
def test_sixteen_bit_grey_keeps_its_tones(fmt: str) -> None:
    """A 16-bit grey PNG (Pillow's I;16) is scaled to 8 bits, not clipped to white."""
    if fmt not in formats():
        pytest.skip("this Pillow has no AVIF")
    import numpy as np

    ramp = np.tile(np.linspace(0, 65535, 64).astype(np.uint16), (32, 1))
    # I;16 as a PNG opens; 32-bit "I" holding 16-bit values (as older Pillows open a PNG)
    # as a TIFF, the one format Pillow writes it in.
    for source, kind in (
        (Image.fromarray(ramp), "PNG"),
        (Image.fromarray(ramp.astype(np.int32)), "TIFF"),
    ):
        data = io.BytesIO()
        source.save(data, kind)
        made = convert(data.getvalue(), ImageSettings(fmt=fmt, quality=95))
        assert made is not None
        with Image.open(io.BytesIO(made)) as image:
            grey = np.asarray(image.convert("I")).astype(np.int64)
        if image.mode.startswith("I"):  # PNG keeps 16 bits
            grey = grey // 257
        assert grey[:, :4].mean() < 20, fmt  # black stays black
        assert 100 < grey[:, 30:34].mean() < 156, fmt  # the middle stays grey
        assert grey[:, -4:].mean() > 235, fmt
