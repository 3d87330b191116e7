"""Fault knobs of the fake Midjourney server: everything a careful client meets, switchable.

All knobs are off by default. A :class:`Faults` may be changed while the server runs (assign
fields, or assign a new object to ``server.faults``); each request reads the current values.
"Every Nth" knobs count requests in ``targets`` from the server's start, so a sequential client
meets them at the same requests on every run; the 5xx draw uses ``random.Random(error_seed)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

AuthFailureStyle = Literal["json401", "html403", "html200", "redirect"]


@dataclass
class Faults:
    # -- transient faults: apply to requests whose kind ("api" / "cdn") is in ``targets`` --------
    targets: frozenset[str] = frozenset({"api", "cdn"})
    latency: float = 0.0  # seconds added before every answer
    bandwidth: int | None = None  # bytes per second per connection for response bodies
    # Of every ``rate_limit_every`` requests the last ``rate_limit_burst`` answer 429.
    rate_limit_every: int = 0
    rate_limit_burst: int = 1
    retry_after: int = 1  # the Retry-After header of a 429, seconds
    error_rate: float = 0.0  # probability of a 5xx answer
    error_status: int = 503
    error_seed: int = 0
    drop_every: int = 0  # every Nth answer: half the body, then the connection is reset
    short_body_every: int = 0  # every Nth answer: Content-Length larger than the body sent

    # -- CDN ------------------------------------------------------------------------------------
    # CDN-relative paths ("{job}/0_1.png") that 404; matched by stem, so the WebP goes too.
    missing_images: frozenset[str] = frozenset()
    missing_fraction: float = 0.0  # share of image stems that 404 (chosen by hash, stable)
    cdn_requires_browser_ua: bool = False  # 403 unless User-Agent starts with "Mozilla/"
    cdn_requires_sec_fetch: bool = False  # 403 unless Sec-Fetch-Mode/-Dest headers are sent
    # A CDN that lies: these paths (by stem, as missing_images) or this share of stems are
    # served cut to two thirds, with a Content-Length (and ranges) that agree with the cut.
    cut_images: frozenset[str] = frozenset()
    cut_fraction: float = 0.0
    cut_first_requests: int = 0  # 0: always cut; N: only a file's first N requests are cut
    # Every CDN request answers 302 to this base URL + the same path (another host, say).
    redirect_images_to: str | None = None
    # v1 records of these job ids list one more image path, ``{job}/../../../etc/passwd``.
    escaping_image_paths: frozenset[str] = frozenset()
    # API answers refresh the session cookie (Set-Cookie), as the real site does.
    api_sets_session_cookie: bool = False

    # -- authentication and interstitials (API only) --------------------------------------------
    expire_after_api_requests: int | None = None  # from the N+1th API request on: auth fails
    expire_at: float | None = None  # from this time.time() on: auth fails
    expired: bool = False  # auth fails now
    auth_failure_style: AuthFailureStyle = "json401"
    html_every: int = 0  # every Nth API request answers 200 with a login page (text/html)
    cf_clearance: str | None = None  # if set: challenge unless cookie cf_clearance=<this> is sent

    # -- listing behaviour ----------------------------------------------------------------------
    duplicate_records: int = 0  # every page after the first repeats the previous page's last N
    add_jobs_after_listing_request: int = 0  # after the Kth listing request …
    add_jobs_count: int = 0  # … this many new jobs appear (once)

    # -- a server that lies (listing answers) ---------------------------------------------------
    # "Page N" counts from 1 in each listing walk: v1's `page`, or offset / page_size + 1 of a
    # v2/v3 cursor (the one-record probe of `--api auto` is page 1 too).
    lying_batch_size: int = 0  # grids without image_paths (v2/v3) claim this `batch_size`
    truncated_page: int = 0  # listing page N is cut in half (HTTP intact, the JSON not)
    non_object_page: int = 0  # listing page N answers JSON of the wrong shape: `[]` (v1: `{}`)
    non_object_items: int = 0  # every listing page carries N more items: 1, 2, … (not objects)
    endless_cursors: bool = False  # past its end a v2/v3 listing starts over, new cursors forever
    oversized_page: int = 0  # bytes: every listing page streams this much JSON, no Content-Length
