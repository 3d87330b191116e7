from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mjvault.errors import UsageError
from mjvault.model import job_from_record
from mjvault.views.template import DEFAULT_TEMPLATE, Template


def _job(**overrides: object):
    record: dict[str, object] = {
        "id": "0a1b2c3d-1111-2222-3333-444455556666",
        "enqueue_time": "2024-03-05 07:38:42.209596",
        "type": "grid",
        "full_command": "a red fox in snow --ar 16:9 --v 6.1 --s 250 --style raw --tile",
        "username": "ada",
        "job_type": "v6_diffusion",
    }
    record.update(overrides)
    return job_from_record(record)


def test_default_template_renders_dated_tree() -> None:
    path = Template.parse(DEFAULT_TEMPLATE).render(_job(), 2, "png")
    assert path == "2024/2024-03/a red fox in snow_0a1b2c3d-1111-2222-3333-444455556666_2.png"


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("{ar}", "16x9"),
        ("{version}", "6.1"),
        ("{v}", "6.1"),
        ("{stylize}", "250"),
        ("{style}", "raw"),
        ("{tile}", "true"),
        ("{chaos}", "none"),
        ("{chaos:zero}", "zero"),
        ("{param:tile}", "true"),
        ("{param:sref}", "none"),
        ("{username}", "ada"),
        ("{job_type}", "v6_diffusion"),
        ("{type}", "grid"),
        ("{job_id:8}", "0a1b2c3d"),
        ("{prompt:5}", "a red"),
        ("{date:%Y/%m/%d}", "2024/03/05"),
        ("{date}", "2024-03-05"),
        ("{{{index}}}", "{3}"),
        ("{ext}", "webp"),
    ],
)
def test_fields(template: str, expected: str) -> None:
    assert Template.parse(template).render(_job(), 3, "WEBP") == expected


def test_missing_values_have_placeholders() -> None:
    job = _job(enqueue_time=None, username=None, full_command="https://s.mj.run/abc", prompt=None)
    rendered = Template.parse("{date:%Y}|{username}|{prompt}|{version}").render(job, 0, "png")
    assert rendered == "unknown-date_unknown-user_untitled_none".replace("_", "|")


def test_field_values_never_make_directories() -> None:
    job = _job(full_command="cats/dogs\\birds ../../etc --style a/b", username="x/../y")
    rendered = Template.parse("{prompt}-{style}-{username}").render(job, 0, "png")
    assert "/" not in rendered and "\\" not in rendered


def test_date_is_utc() -> None:
    job = _job(enqueue_time="2024-03-05T23:30:00-05:00")
    assert Template.parse("{date:%Y-%m-%d %H}").render(job, 0, "png") == "2024-03-06 04"
    assert job.enqueue_time == datetime(2024, 3, 6, 4, 30, tzinfo=UTC)


@pytest.mark.parametrize(
    "bad",
    [
        "{nope}",
        "{job_id",
        "job}",
        "{index:3}",
        "{prompt:abc}",
        "{prompt:0}",
        "{date:plain}",
        "{param:}",
        "plain-name.png",
        "{a{b}}",
        "/".join(["{index}"] * 40),
    ],
)
def test_bad_templates_fail_when_defined(bad: str) -> None:
    with pytest.raises(UsageError) as info:
        Template.parse(bad)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("bad", "says"),
    [
        ("{date:%Q%}/{job_id}", "%Q is not a strftime directive"),
        ("{date:%Y-%Q}/{job_id}", "%Q is not a strftime directive"),
        ("{date:%Y%}/{job_id}", "ends with a lone '%'"),
        ("{date:%Y-%m-%}_{job_id}", "ends with a lone '%'"),
        ("{date:%E}/{job_id}", "%E is not a strftime directive"),
        ("{date:%:z}/{job_id}", "%: is not a strftime directive"),
        ("{date:%n}/{job_id}", "%n is not a strftime directive"),
    ],
)
def test_unknown_strftime_directives_are_refused(bad: str, says: str) -> None:
    with pytest.raises(UsageError) as info:
        Template.parse(bad)
    assert says in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("good", ["%Y/%m", "%Y-%m-%d %H.%M.%S", "100%% %Y", "%-d %b", "%G-W%V"])
def test_known_strftime_directives_are_accepted(good: str) -> None:
    Template.parse(f"{{date:{good}}}/{{job_id}}")


@settings(max_examples=300, deadline=None)
@given(
    moment=st.datetimes(
        min_value=datetime(1971, 1, 2),
        max_value=datetime(2100, 1, 1),
        timezones=st.sampled_from([UTC, timezone(timedelta(hours=-9))]),
    ),
    fmt=st.sampled_from(["%Y/%Y-%m", "%Y-%m-%d", "%d %b", "%Y-%m-%d %H.%M", "%j %G-W%V-%u"]),
)
def test_a_date_remembered_per_day_renders_as_strftime_does(moment: datetime, fmt: str) -> None:
    """Formats of the day alone are worked out once per UTC day; the text is the same."""
    template = Template.parse(f"{{date:{fmt}}}/{{job_id}}_{{index}}.{{ext}}")
    job = _job(enqueue_time=moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f"))
    expected = job.enqueue_time.astimezone(UTC).strftime(fmt)
    for _ in range(2):  # worked out, then remembered
        assert template.render(job, 0, "png").split("/" + job.id)[0] == expected
