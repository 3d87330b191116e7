import os
import random
import tempfile
import unicodedata
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mjvault.model import job_from_record
from mjvault.views import paths
from mjvault.views.paths import (
    MAX_COMPONENT_BYTES,
    fit_component,
    resolve_collisions,
    safe_component,
    safe_relpath,
)
from mjvault.views.template import Template, ext_text

WINDOWS_DEVICES = {"CON", "PRN", "AUX", "NUL"} | {
    f"{p}{n}" for p in ("COM", "LPT") for n in "0123456789"
}
FIELDS = [
    "{job_id}",
    "{index}",
    "{ext}",
    "{type}",
    "{date:%Y/%m}",
    "{date:%Y-%m-%d}",
    "{prompt:40}",
    "{prompt:255}",
    "{ar}",
    "{version}",
    "{style}",
    "{username}",
    "{job_type}",
    "{param:no}",
    "{seed}",
    "{niji}",
]
# Text with everything awkward: separators, dots, reserved characters, controls, surrogates,
# combining marks, bidi overrides, emoji and wide scripts.
nasty_alphabet = st.one_of(
    st.sampled_from(
        list('/\\..  :<>"|?*\x00\x01\x1f\x7f\u202e\ufeff\u0301e\u00e9\u732b\U0001f98aCONLPT1aux')
    ),
    st.characters(codec=None),
)
nasty_text = st.text(nasty_alphabet, max_size=300)
literal = nasty_text.map(lambda s: s.replace("{", "{{").replace("}", "}}"))


@st.composite
def templates(draw: st.DrawFn) -> Template:
    parts = draw(st.lists(st.one_of(literal, st.sampled_from(FIELDS)), min_size=1, max_size=8))
    text = "".join(parts) + draw(st.sampled_from(FIELDS))
    return Template.parse(text)


@st.composite
def jobs(draw: st.DrawFn):
    params = draw(
        st.lists(
            st.tuples(st.sampled_from(["ar", "v", "style", "no", "seed"]), nasty_text), max_size=4
        )
    )
    command = draw(nasty_text) + "".join(f" --{n} {v}" for n, v in params)
    return job_from_record(
        {
            # Still hostile for paths (slashes, dots, reserved names), but a job id the model
            # accepts: no control characters, at most 200 bytes (mjvault.model).
            "id": "".join(
                c
                for c in draw(st.text(nasty_alphabet, min_size=1, max_size=50))
                if ord(c) >= 32 and not 0xD800 <= ord(c) <= 0xDFFF
            ).strip()
            or "x",
            "enqueue_time": draw(st.one_of(st.none(), st.datetimes().map(str))),
            "type": draw(nasty_text),
            "full_command": command,
            "username": draw(nasty_text),
            "job_type": draw(nasty_text),
        }
    )


def assert_valid_everywhere(relpath: str) -> None:
    assert relpath and not relpath.startswith("/")
    assert len(relpath.encode("utf-8")) <= 800 + 0  # total budget for the rendered part
    for part in relpath.split("/"):
        assert part not in ("", ".", "..")
        assert part == part.strip(" ."), part
        assert not any(c in part for c in '<>:"|?*\\')
        assert not any(unicodedata.category(c) in ("Cc", "Cs") for c in part)
        assert unicodedata.is_normalized("NFC", part)
        assert len(part.encode("utf-8")) <= MAX_COMPONENT_BYTES
        assert part.split(".", 1)[0].rstrip(" ").upper() not in WINDOWS_DEVICES


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    template=templates(),
    job=jobs(),
    index=st.integers(0, 9),
    ext=st.sampled_from(["png", "webp", "mp4", "a.b/c"]),
)
def test_rendered_paths_stay_inside_and_are_valid(
    template: Template, job, index: int, ext: str
) -> None:
    relpath = safe_relpath(template.render(job, index, ext))
    assert_valid_everywhere(relpath)
    root = "/view/root"
    assert os.path.normpath(os.path.join(root, relpath)).startswith(root + "/")
    assert safe_relpath(template.render(job, index, ext)) == relpath  # deterministic
    assert safe_relpath(relpath) == relpath  # already safe stays unchanged


# Text near safe_component's edges: dots and spaces that end names, device names, separators.
edgy_text = st.text(st.sampled_from(list("ab.  /\\:*COMLPTcomnul1_-~\u00e9\x00")), max_size=40)


@settings(max_examples=1000, deadline=None)
@given(head=edgy_text, tail=edgy_text, index=st.integers(0, 10**paths.INDEX_DIGITS - 1))
def test_an_inert_index_is_safe_whatever_its_digits(head: str, tail: str, index: int) -> None:
    if paths.index_is_inert(head, tail):
        raw = f"{head}{index}{tail}"
        assert safe_relpath(raw) == raw


@pytest.mark.parametrize(
    ("head", "tail", "inert"),
    [
        ("2024/2024-05/fox harbour_abc_", ".png", True),
        ("2024/2024-05/com", ".png", False),  # com1.png is a device name, com10.png is not
        ("2024/2024-05/cat and dog_", ". .png", True),
        ("2024/", "/x_abcdefgh.png", False),  # the index names a directory
        ("2024/2024-05/fox and hound ", "", True),
        ("2024/2024-05/fox and hound_", " ", False),  # a trailing space is cut
        ("2024/caf\u00e9_long name_", ".png", False),  # not ASCII: the long way
        ("a" * 252, ".png", False),  # no room for more digits
    ],
)
def test_an_index_is_inert_only_where_no_digit_can_matter(
    head: str, tail: str, inert: bool
) -> None:
    assert paths.index_is_inert(head, tail) is inert


# Templates and jobs that mostly render safe names (so the split is often taken), with the
# edges mixed in: short stems, dots and spaces, device names, separators, non-ASCII.
tame_text = st.lists(
    st.sampled_from([*"abc xyz_-.", "com", "/", "\u00e9", "  ", ".."]), max_size=12
).map("".join)


@st.composite
def tame_templates(draw: st.DrawFn) -> Template:
    fields = ["{job_id}", "{job_id:4}", "{date:%Y/%Y-%m}", "{prompt:30}", "{ar}", "{ext}"]
    parts = draw(st.lists(st.one_of(tame_text, st.sampled_from(fields)), max_size=5))
    at = draw(st.integers(0, len(parts)))
    text = "".join([*parts[:at], "{index}", *parts[at:]])
    return Template.parse(text.replace("{{", "").replace("}}", ""))


@st.composite
def tame_jobs(draw: st.DrawFn):
    return job_from_record(
        {
            "id": draw(st.text(st.sampled_from(list("0123456789abcdef-")), min_size=1)),
            "enqueue_time": draw(st.one_of(st.none(), st.datetimes().map(str))),
            "type": "grid",
            "full_command": draw(st.one_of(tame_text, nasty_text)) + " --ar 16:9",
        }
    )


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    template=st.one_of(templates(), tame_templates()),
    job=st.one_of(jobs(), tame_jobs()),
    index=st.integers(0, 10**paths.INDEX_DIGITS - 1),
    ext=st.sampled_from(["png", "webp", "mp4", "a.b/c"]),
)
def test_a_job_split_at_its_index_names_images_as_safe_relpath_does(
    template: Template, job, index: int, ext: str
) -> None:
    form = template.job_format(job)
    split = template.index_split(form, ext_text(ext))
    if split is not None:
        assert f"{split[0]}{index}{split[1]}" == safe_relpath(template.render(job, index, ext))


def test_a_literal_mark_in_a_template_is_not_taken_for_the_index() -> None:
    job = job_from_record({"id": "abc", "prompt": "fox", "type": "grid"})
    for text in ("a\x00b_{job_id}_{index}.{ext}", "a\x00b_{job_id}.{ext}"):
        template = Template.parse(text)
        assert template.index_split(template.job_format(job), "png") is None


@settings(max_examples=200, deadline=None)
@given(raw=nasty_text)
def test_any_raw_path_is_neutralised(raw: str) -> None:
    assert_valid_everywhere(safe_relpath(raw))


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(raw=nasty_text)
def test_linux_accepts_every_rendered_path(tmp_path: Path, raw: str) -> None:
    relpath = safe_relpath(raw)
    example_root = Path(tempfile.mkdtemp(dir=tmp_path))  # examples share tmp_path
    target = example_root / relpath
    target.parent.mkdir(parents=True, exist_ok=True)
    target.touch()
    assert target.resolve().is_relative_to(example_root.resolve())


def test_examples() -> None:
    assert safe_relpath("../../etc/passwd") == "_/_/etc/passwd"
    assert safe_relpath("/abs/path.png") == "abs/path.png"
    assert safe_relpath("a//b/./c") == "a/b/_/c"
    assert safe_relpath("con.png") == "_con.png"
    assert safe_relpath("Lpt1") == "_Lpt1"
    assert safe_relpath(" .hidden. ") == "hidden"
    assert safe_relpath("what? a: <cat>|*") == "what_ a_ _cat___"
    assert safe_relpath("e\u0301") == "\u00e9"
    assert safe_relpath("a\x00b\nc") == "a_b_c"


def test_long_names_keep_extension_and_whole_characters() -> None:
    name = "\u732b" * 200 + ".webp"  # 600 bytes of 3-byte characters
    cut = fit_component(name)
    assert cut.endswith(".webp")
    assert len(cut.encode("utf-8")) <= 255
    assert cut[:-5] == "\u732b" * ((255 - 5) // 3)
    assert safe_component("\U0001f98a" * 100 + ".png").endswith(".png")


def test_long_total_path_is_shortened() -> None:
    raw = "/".join(["d" * 250] * 6) + "/" + "f" * 250 + ".png"
    out = safe_relpath(raw)
    assert len(out.encode()) <= 800
    assert out.endswith(".png") and out.count("/") == 6


@settings(max_examples=200, deadline=None)
@given(
    items=st.dictionaries(
        st.tuples(
            st.sampled_from(["aaaa1111-x", "bbbb2222-y", "AAAA1111-z", "c"]), st.integers(0, 3)
        ),
        st.sampled_from(["x.png", "X.PNG", "x~aaaa1111_0.png", "y.png", "d/x.png"]),
        max_size=12,
    ),
    seed=st.integers(0, 1000),
)
def test_collisions_resolve_deterministically(items: dict, seed: int) -> None:
    shuffled = list(items.items())
    random.Random(seed).shuffle(shuffled)
    first = resolve_collisions(items)
    second = resolve_collisions(dict(shuffled))
    assert first == second
    folded = [p.casefold() for p in first.values()]
    assert len(folded) == len(set(folded))
    for path in first.values():
        assert_valid_everywhere(path)


def test_collision_winner_keeps_plain_name() -> None:
    out = resolve_collisions({("bbbb2222", 0): "cat.png", ("aaaa1111", 1): "Cat.png"})
    assert out == {("aaaa1111", 1): "Cat.png", ("bbbb2222", 0): "cat~bbbb2222_0.png"}
    taken = resolve_collisions({("aaaa1111", 1): "cat.png"}, taken=["CAT.png"])
    assert taken == {("aaaa1111", 1): "cat~aaaa1111_1.png"}


def test_suffixed_names_stay_within_limits() -> None:
    long_dir = "/".join(["d" * 200] * 3)
    plain = safe_relpath(f"{long_dir}/{'n' * 250}.png")
    out = resolve_collisions({("job-a", 0): plain, ("job-b", 1): plain})
    for path in out.values():
        assert_valid_everywhere(path)
    assert out[("job-b", 1)].endswith("~jobb_1.png")


@given(
    st.text(st.sampled_from("cCoOnNmMpPrRaAuUxXlLtT1$0 .-"), max_size=12)
    | st.sampled_from(sorted(paths._WINDOWS_DEVICES)).flatmap(
        lambda device: st.tuples(st.text(" ", max_size=5), st.text(".a ", max_size=4)).map(
            lambda tail: device.lower() + tail[0] + tail[1]
        )
    )
)
def test_device_names_are_told_by_the_shortcut_as_by_the_stem(name: str) -> None:
    stem = name.split(".", 1)[0].rstrip(" ").upper()
    assert paths._is_device_name(name) == (stem in paths._WINDOWS_DEVICES)
