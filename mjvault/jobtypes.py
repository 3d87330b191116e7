"""The words a job's type goes by, shared by `sync --type` and `search type:`.

v2/v3 records use other words for what v1 called a ``type``: a grid is a "diffusion" there, and
video jobs say "video_diffusion" / "video_start_end" (event_type); an upscale is "v6_upscale"
(job_type). One word finds them in every generation.
"""

from __future__ import annotations

TYPE_ALIASES: dict[str, tuple[str, ...]] = {
    "grid": ("diffusion",),
    "video": ("video_diffusion", "video_start_end"),
}


def type_matches(value: str, wanted: str) -> bool:
    """Whether a job whose type is ``value`` is one of ``wanted`` (both compared lower-case):
    the same word, a ``…_wanted`` variant (``v6_upscale`` for ``upscale``), or an alias."""
    value, wanted = value.lower(), wanted.lower()
    return value == wanted or value.endswith("_" + wanted) or value in TYPE_ALIASES.get(wanted, ())
