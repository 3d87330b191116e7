"""`mjvault checkout` as a user runs it: a real process on a real vault."""

from __future__ import annotations

import json
from pathlib import Path

from mjvault import Vault
from tests.conftest import png_bytes, record_json, run_cli


def _vault(tmp_path: Path, jobs: int = 3) -> Path:
    with Vault.init(tmp_path / "vault") as vault, vault.writer("test") as writer:
        for n in range(jobs):
            oids = [writer.put_media(png_bytes(n * 10 + i)) for i in range(2)]
            writer.add_job(record_json(f"job-{n}", f"owl {n}"), oids)
    return tmp_path / "vault"


def test_checkout_json_summary_list_and_remove(tmp_path: Path) -> None:
    vault = _vault(tmp_path)
    view = tmp_path / "pictures"
    done = run_cli("--vault", str(vault), "--json", "checkout", str(view), "--template",
                   "{job_id}/{index}.{ext}")  # fmt: skip
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert {k: summary[k] for k in ("added", "removed", "unchanged", "skipped", "conflicts")} == {
        "added": 6, "removed": 0, "unchanged": 0, "skipped": 0, "conflicts": 0
    }  # fmt: skip
    assert (view / "job-1" / "0.png").read_bytes() == png_bytes(10)

    refresh = run_cli("--vault", str(vault), "--json", "checkout")
    assert json.loads(refresh.stdout)["views"][0]["mode"] == "up-to-date"

    listed = json.loads(run_cli("--vault", str(vault), "--json", "checkout", "--list").stdout)
    assert [(v["name"], v["files"]) for v in listed] == [("pictures", 6)]

    removed = run_cli("--vault", str(vault), "checkout", "--remove", "pictures")
    assert removed.returncode == 0 and not (view / "job-1").exists()


def test_bad_template_is_one_line_and_exit_2(tmp_path: Path) -> None:
    vault = _vault(tmp_path)
    done = run_cli("--vault", str(vault), "checkout", str(tmp_path / "v"), "-t", "{job_id")
    assert done.returncode == 2
    assert done.stderr.decode().count("\n") == 1 and b"never closed" in done.stderr
    assert not (tmp_path / "v").exists()


def test_options_change_only_what_is_given(tmp_path: Path) -> None:
    vault = _vault(tmp_path)
    view = tmp_path / "v"
    run_cli("--vault", str(vault), "checkout", str(view), "-t", "{job_id}_{index}.{ext}")
    done = run_cli("--vault", str(vault), "--json", "checkout", str(view), "--link", "copy")
    report = json.loads(done.stdout)
    assert report["link"] == "copy" and report["updated"] == 6
    assert (view / "job-0_0.png").is_file() and not (view / "job-0_0.png").is_symlink()


def test_same_directory_names_and_unpinning(tmp_path: Path) -> None:
    vault = _vault(tmp_path, jobs=1)
    with Vault.open(vault) as opened:
        first = opened.head()
        assert first is not None
        with opened.writer("test") as writer:
            writer.add_job(record_json("job-9", "late owl"), [writer.put_media(png_bytes(99))])
    a, b = tmp_path / "a" / "pics", tmp_path / "b" / "pics"
    pinned = run_cli(
        "--vault", str(vault), "--json", "checkout", str(a), "--snapshot", first.id[:8]
    )
    assert json.loads(pinned.stdout)["added"] == 2
    run_cli("--vault", str(vault), "checkout", str(b))
    listed = json.loads(run_cli("--vault", str(vault), "--json", "checkout", "--list").stdout)
    assert sorted(v["name"] for v in listed) == ["pics", "pics-2"]
    unpinned = run_cli("--vault", str(vault), "--json", "checkout", str(a), "--snapshot", "latest")
    assert json.loads(unpinned.stdout)["added"] == 1


def test_encrypted_vault_checkout_says_it_makes_copies(tmp_path: Path) -> None:
    from tests.conftest import CHEAP_KDF, PASSPHRASE

    path = tmp_path / "vault"
    with (
        Vault.init(path, encrypt=True, passphrase=PASSPHRASE, kdf=CHEAP_KDF) as vault,
        vault.writer("test") as writer,
    ):
        writer.add_job(record_json("job-1", "secret owl"), [writer.put_media(png_bytes(5))])
    done = run_cli(
        "--vault", str(path), "checkout", str(tmp_path / "v"),
        env={"MJVAULT_PASSPHRASE": PASSPHRASE},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert b"encrypted" in done.stderr and b"copies" in done.stderr
    assert b"(copy, full)" in done.stdout
    (image,) = [p for p in (tmp_path / "v").rglob("*.png")]
    assert not image.is_symlink() and image.read_bytes() == png_bytes(5)


def test_encrypted_vault_view_is_owner_only_and_says_it_is_plaintext(tmp_path: Path) -> None:
    import os
    import stat

    from tests.conftest import CHEAP_KDF, PASSPHRASE

    path = tmp_path / "vault"
    with (
        Vault.init(path, encrypt=True, passphrase=PASSPHRASE, kdf=CHEAP_KDF) as vault,
        vault.writer("test") as writer,
    ):
        writer.add_job(record_json("job-1", "secret owl"), [writer.put_media(png_bytes(5))])
    view = tmp_path / "v"
    env = {"MJVAULT_PASSPHRASE": PASSPHRASE}

    def modes() -> set[int]:
        found = {stat.S_IMODE(os.lstat(view).st_mode)}
        for folder, dirs, files in os.walk(view):
            found |= {stat.S_IMODE(os.lstat(os.path.join(folder, n)).st_mode) for n in dirs + files}
        return found

    done = run_cli("--vault", str(path), "checkout", str(view), "-t", "{job_id}/{index}.{ext}",
                   env=env)  # fmt: skip
    assert done.returncode == 0, done.stderr
    lines = done.stderr.decode().splitlines()
    assert [line for line in lines if "plaintext" in line] == lines and len(lines) == 1
    assert "readable by you alone" in lines[0]
    assert modes() == {0o700, 0o600}
    opted_out = run_cli("--vault", str(path), "checkout", str(view), "--no-private", env=env)
    assert opted_out.returncode == 0, opted_out.stderr
    assert b"--no-private" in opted_out.stderr and 0o600 not in modes()
    listed = json.loads(run_cli("--vault", str(path), "--json", "checkout", "--list",
                                env=env).stdout)  # fmt: skip
    assert listed[0]["private"] is False  # remembered: a plain refresh keeps it
    assert run_cli("--vault", str(path), "checkout", env=env).returncode == 0
    assert 0o600 not in modes()
