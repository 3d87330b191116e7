"""``--anonymize``: export, gallery and stats output scanned for the user id, usernames and
image-prompt URLs the vault holds. The same outputs without it hold them (so the scan finds
what it looks for), and the rest of the prompt survives."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from config_helpers import isolate
from config_helpers import run_cli as run_in_process

from mjvault import Vault
from mjvault.find.anonymize import anonymize_record, scrub, scrub_params
from mjvault.testing.images import make_png

UID = "5b9f0c7e-61d2-4a57-9a83-2f1c0de4b6a1"
SECRETS = (
    UID,
    "ann_the_artist",
    "bob.discord",
    "Zq9XyPromptImg",
    "styleRefImg77",
    "seedImg55",
    "https://",
)


def records() -> Iterator[tuple[str, dict[str, object]]]:
    yield (
        "job-a",
        {
            "id": "job-a",
            "enqueue_time": "2024-03-02T10:00:00Z",
            "job_type": "v6_diffusion",
            "event_type": "diffusion",
            "full_command": "https://s.mj.run/Zq9XyPromptImg a fox in deep snow "
            "--sref https://cdn.example.org/styleRefImg77.png --v 6",
            "batch_size": 1,
            "user_id": UID,
            "username": "ann_the_artist",
        },
    )
    yield (
        "job-b",
        {
            "id": "job-b",
            "enqueue_time": "2023-05-26 07:38:42.209596",
            "type": "upscale",
            "prompt": "<https://media.example.net/seedImg55.png> quiet harbour at dawn",
            "full_command": "<https://media.example.net/seedImg55.png> quiet harbour at dawn",
            "event": {"seedImageURL": "https://media.example.net/seedImg55.png"},
            "image_paths": ["https://cdn.midjourney.com/job-b/0_0.png"],
            "discord_user_id": "bob.discord",
            "userId": UID,
        },
    )


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    isolate(monkeypatch, tmp_path)
    vault = Vault.init(tmp_path / "vault")
    with vault.writer(f"midjourney:v3:{UID}") as writer:
        for n, (_, record) in enumerate(records()):
            image = writer.put_media(make_png(n, 48, 32))
            writer.add_job(json.dumps(record).encode(), [image])
    vault.close()
    return tmp_path


def found(data: bytes) -> set[str]:
    text = data.decode("utf-8", errors="replace").lower()
    return {s for s in SECRETS if s.lower() in text}


def tree_bytes(directory: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file())


def outputs(world: Path, capsys: pytest.CaptureFixture[str], *flag: str) -> dict[str, bytes]:
    at = ("--vault", str(world / "vault"))
    out: dict[str, bytes] = {}
    tag = "anon" if flag else "plain"
    for fmt in ("json", "jsonl", "csv"):
        target = world / f"{tag}.{fmt}"
        assert run_in_process(capsys, *at, "export", "-f", fmt, "-o", str(target), *flag).code == 0
        out[f"export {fmt}"] = target.read_bytes()
    gallery = world / f"gallery-{tag}"
    result = run_in_process(capsys, *at, "--json", "gallery", str(gallery), *flag)
    assert result.code == 0 and result.json()["jobs"] == 2, result.err
    out["gallery"] = tree_bytes(gallery)
    stats = run_in_process(capsys, *at, "stats", "--json", "--no-storage", *flag)
    assert stats.code == 0, stats.err
    out["stats --json"] = stats.out.encode()
    chart = world / f"chart-{tag}.html"
    human = run_in_process(capsys, *at, "stats", "--no-storage", "--chart", str(chart), *flag)
    assert human.code == 0 and "per month" in human.out, human.err
    out["stats"] = human.out.encode()
    out["stats chart"] = chart.read_bytes()
    return out


def test_no_user_or_image_prompt_url_is_left_in_any_output(
    world: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plain = outputs(world, capsys)
    # What the scan looks for is there without --anonymize.
    assert found(plain["export jsonl"]) >= {"ann_the_artist", "Zq9XyPromptImg", "styleRefImg77"}
    assert found(plain["gallery"]) >= {"Zq9XyPromptImg", "styleRefImg77"}
    assert UID in found(plain["stats --json"])
    anonymized = outputs(world, capsys, "--anonymize")
    for name, data in anonymized.items():
        assert found(data) == set(), name
    for name in ("export jsonl", "export csv", "gallery"):
        text = anonymized[name].decode("utf-8", errors="replace")
        assert "a fox in deep snow" in text and "quiet harbour at dawn" in text, name
    rows = [json.loads(line) for line in anonymized["export jsonl"].splitlines()]
    by_id = {row["id"]: row for row in rows}
    assert by_id["job-a"]["params"] == {"version": "6"}
    assert by_id["job-a"]["username"] is None
    stats = json.loads(anonymized["stats --json"])
    assert stats["history"]["by_source"] == {"midjourney": 1}
    # Terms are counted with the prompt's URLs taken out: an anonymized document keeps them
    # (the scan above found no URL's word in it).
    terms = {term for m in stats["terms"]["top"] for term, _ in m["terms"]}
    assert stats["terms"]["anonymized"] and {"fox", "harbour"} <= terms
    assert any("v 6" in m["share"] for m in stats["evolution"]["models"])


def test_a_record_keeps_everything_but_the_person_and_the_urls() -> None:
    record = dict(records())["job-b"]
    out = json.loads(anonymize_record(json.dumps(record).encode()))
    assert out["image_paths"] == record["image_paths"]  # the job's own outputs, by job id
    assert out["event"] == {"seedImageURL": ""}
    assert out["prompt"] == "quiet harbour at dawn"
    assert "discord_user_id" not in out and "userId" not in out
    assert out["enqueue_time"] == record["enqueue_time"]
    assert scrub("no url here,  two  spaces\n kept") == "no url here,  two  spaces\n kept"
    assert scrub_params({"sref": "https://x.example/a.png", "v": "6", "tile": True}) == {
        "v": "6",
        "tile": True,
    }
    assert anonymize_record(b"not json") == b"{}"


def test_export_all_anonymized_names_no_one(
    world: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MIDJOURNEY_USER_ID", UID)
    at = ("--vault", str(world / "vault"))
    plain = run_in_process(capsys, *at, "export", "--all", str(world / "plain"))
    assert plain.code == 0, plain.err
    assert UID in found(tree_bytes(world / "plain"))  # the config and the snapshots name it
    result = run_in_process(capsys, *at, "export", "--all", str(world / "anon"), "--anonymize")
    assert result.code == 0, result.err
    # image_paths are the job's own CDN files, kept on purpose: every other URL goes.
    assert found(tree_bytes(world / "anon")) - {"https://"} == set()
    record = next(p for p in (world / "anon" / "jobs").rglob("*job-b.json"))
    assert json.loads(record.read_bytes())["image_paths"] == [
        "https://cdn.midjourney.com/job-b/0_0.png"
    ]


def path_names(directory: Path) -> bytes:
    return "\n".join(str(p.relative_to(directory)) for p in directory.rglob("*")).encode()


def test_export_all_anonymized_names_no_one_in_its_path_names(
    world: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    at = ("--vault", str(world / "vault"))
    template = ("--template", "{username}/{param:sref}_{prompt}_{job_id}")
    plain = run_in_process(capsys, *at, "export", "--all", str(world / "plain"), *template)
    assert plain.code == 0, plain.err
    # The scan finds what the template puts in names: a username, a parameter's URL.
    assert found(path_names(world / "plain")) >= {"ann_the_artist", "styleRefImg77"}
    anon = world / "anon"
    result = run_in_process(capsys, *at, "export", "--all", str(anon), "--anonymize", *template)
    assert result.code == 0, result.err
    assert found(path_names(anon)) == set()
    assert found(tree_bytes(anon)) - {"https://"} == set()  # the manifest lists the paths
    records = sorted(str(p.relative_to(anon / "jobs")) for p in (anon / "jobs").rglob("*.json"))
    assert records == [
        "unknown-user/none_quiet harbour at dawn_job-b.json",
        "unknown-user/true_a fox in deep snow_job-a.json",  # a bare --sref is left
    ]
