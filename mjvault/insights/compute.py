"""The insights document (docs/usage.md, "The insights document"): activity, evolution, terms,
ratings and a cost estimate, built from counters (mjvault/insights/aggregates.py).

Unfiltered, the counters are the ones the index keeps: a read of one table, whatever the number
of jobs. A date or query filter sums the same counters over the matching jobs only, one summary
at a time (memory grows with the counters, not with the jobs).

Days, weeks, activity months, hours and sessions come from the minute counters, read in time
order and folded into per-day sums as they come: memory holds a few numbers a day with a job,
never one a minute, in a plain or a sealed index alike. They are in the document's time zone,
exactly (DST and half-hour zones included: a minute knows its offset); the months of the
evolution, terms, ratings and cost are UTC months, as their counters are keyed.
"""

from __future__ import annotations

import datetime as dt
import math
import os
import zoneinfo
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from mjvault.config.schema import DEFAULT_INSIGHTS_COST as DEFAULT_COST
from mjvault.find.results import summaries
from mjvault.index.query import parse_query
from mjvault.index.search import iter_search
from mjvault.insights import aggregates
from mjvault.insights.aggregates import IMAGES, PARAMS, UNDATED

if TYPE_CHECKING:
    from mjvault.index.db import Index
    from mjvault.vault import Vault

VERSION = 1
EPOCH = dt.date(1970, 1, 1)
MINUTE_PREFIX = "mi\t"
JOBS_MASK = IMAGES - 1
OFFSET_STEP = 15  # minutes: every time zone's offset changes on a quarter hour (UTC)
RELEASE_EVERY = 4096  # counters read between two releases of the index's mapped pages
SESSION_GAP_MINUTES = 30
TOP_TERMS = 20
# Dunning's G² of one degree of freedom: 10.83 is the chi-squared critical value at p = 0.001.
G2_THRESHOLD = 10.83
G2_P = 0.001


def cost_table(configured: Mapping[str, float] | None = None) -> dict[str, float]:
    """The defaults with the configured entries over them."""
    return {**DEFAULT_COST, **(configured or {})}


def insights(
    vault: Vault,
    since: dt.date | None = None,
    until: dt.date | None = None,
    query: str | None = None,
    *,
    cost: Mapping[str, float] | None = None,
    today: dt.date | None = None,
    tz: str | None = None,
) -> dict[str, Any]:
    """The insights document of ``vault``'s jobs (HEAD), or of those matching the filters;
    ``tz``: an IANA time zone name (None or "": the machine's)."""
    filtered = since is not None or until is not None or bool(query and query.strip())
    if filtered:
        words = [query or ""]
        if since is not None:
            words.append(f"since:{since.isoformat()}")
        if until is not None:
            words.append(f"until:{until.isoformat()}")
        # Matches streamed a day at a time (iter_search), summaries read one by one: memory
        # holds the counters, not the matches.
        matching = iter_search(vault.current_index(), parse_query(" ".join(w for w in words if w)))
        # Sorted: the minute counters in time order, as the index reads them.
        counters: Iterable[tuple[str, int]] = sorted(
            aggregates.recompute(summaries(vault, matching)).items()
        )
    else:
        counters = kept(vault.current_index())
    document = build(counters, cost=cost_table(cost), today=today, tz=zone(tz))
    document["filter"] = {
        "since": since.isoformat() if since else None,
        "until": until.isoformat() if until else None,
        "query": query or None,
    }
    return document


def kept(index: Index) -> Iterator[tuple[str, int]]:
    """The counters the index keeps, read in one transaction as they are consumed (there is
    one a minute with a job, so never all of them in a list)."""
    db = index.db[aggregates.TABLE]
    with index._reading(), index.env.begin() as txn:
        for n, counter in enumerate(aggregates.read(txn, db, index.layout), 1):
            if n % RELEASE_EVERY == 0:
                index.release_pages()  # read in order: a few MB mapped at most
            yield counter


def zone(name: str | None) -> dt.tzinfo:
    """The time zone named ``name`` (IANA), or the machine's when None or empty: ``TZ``, else
    the zone /etc/localtime links to, else the machine's current offset."""
    if name:
        try:
            return zoneinfo.ZoneInfo(name)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError) as e:
            raise ValueError(f"unknown time zone {name!r} (an IANA name: Europe/Paris)") from e
    for candidate in (os.environ.get("TZ", "").lstrip(":"), _localtime_name()):
        if candidate:
            try:
                return zoneinfo.ZoneInfo(candidate)
            except (zoneinfo.ZoneInfoNotFoundError, ValueError):
                pass
    return dt.datetime.now().astimezone().tzinfo or dt.UTC


def _localtime_name() -> str:
    try:
        target = os.path.realpath("/etc/localtime")
    except OSError:
        return ""
    _, found, name = target.partition("/zoneinfo/")
    return name if found else ""


def zone_name(tz: dt.tzinfo) -> str:
    return str(getattr(tz, "key", None) or tz.tzname(None) or tz)


class _Minutes:
    """The minute counters folded as they come, in time order: sessions (runs of minutes each
    less than the gap after the one before), and jobs and images a day and jobs by hour and
    weekday in the zone. Nothing is held a minute: the current run, and a few numbers a day.
    One call a minute, everything in it: there are as many minutes as jobs, nearly."""

    def __init__(self, tz: dt.tzinfo) -> None:
        self.tz = tz
        self.step = -1  # the quarter hour whose offset is ``offset`` (minutes)
        self.offset = 0
        self.previous = -SESSION_GAP_MINUTES
        self.sessions = self.total = self.longest = self.current = 0
        self.day = -1
        self.sums = [0, 0]
        self.by_day: dict[int, list[int]] = {}  # days since the epoch in the zone: jobs, images
        self.hour_weekday = [[0] * 7 for _ in range(24)]

    def fold(
        self, minute: int, count: int, rest: Iterator[tuple[str, int]]
    ) -> tuple[str, int] | None:
        """Fold this minute and the minute counters that follow it in ``rest``; the first
        other counter (None at the end). One loop over locals: a minute costs a few
        operations, and there are nearly as many minutes as jobs."""
        gap, tz = SESSION_GAP_MINUTES, self.tz
        # A zone of one offset (UTC, a fixed offset) is asked once: one "step" for all.
        step_minutes = 1 << 62 if isinstance(tz, dt.timezone) else OFFSET_STEP
        previous, sessions, total = self.previous, self.sessions, self.total
        longest, current, step, offset = self.longest, self.current, self.step, self.offset
        day_now, sums, by_day, hour_weekday = self.day, self.sums, self.by_day, self.hour_weekday
        following: tuple[str, int] | None = None
        while True:
            jobs = count & JOBS_MASK
            if minute - previous >= gap:
                sessions += 1
                current = 0
            elif minute < previous:
                raise ValueError("minute counters must come in time order")
            previous = minute
            current += jobs
            total += jobs
            if current > longest:
                longest = current
            if minute // step_minutes != step:
                step = minute // step_minutes
                moment = dt.datetime.fromtimestamp(step * step_minutes * 60, dt.UTC)
                shift = moment.astimezone(tz).utcoffset() or dt.timedelta()
                offset = int(shift.total_seconds()) // 60
            local = minute + offset
            day = local // 1440
            if day != day_now:
                day_now = day
                sums = by_day.setdefault(day, [0, 0])
            sums[0] += jobs
            sums[1] += count >> 32  # IMAGES
            hour_weekday[local // 60 % 24][(day + 3) % 7] += jobs  # 1970-01-01: a Thursday
            following = next(rest, None)
            if following is None or not following[0].startswith(MINUTE_PREFIX):
                break
            minute, count = int(following[0][3:]), following[1]
        self.previous, self.sessions, self.total = previous, sessions, total
        self.longest, self.current, self.step, self.offset = longest, current, step, offset
        self.day, self.sums = day_now, sums
        return following

    def session_document(self) -> dict[str, Any]:
        return {
            "count": self.sessions,
            "gap_minutes": SESSION_GAP_MINUTES,
            "mean_jobs": _round(self.total / self.sessions) if self.sessions else None,
            "longest_jobs": self.longest,
        }


def _round(value: float) -> float:
    return round(value, 4)


def _months_between(first: str, last: str) -> list[str]:
    year, month = int(first[:4]), int(first[5:7])
    out = []
    while f"{year:04d}-{month:02d}" <= last:
        out.append(f"{year:04d}-{month:02d}")
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return out


def g2(a: int, b: int, c: int, d: int) -> float:
    """Dunning's log-likelihood of a term seen ``a`` times in ``c`` jobs against ``b`` times
    in ``d`` jobs."""
    if c <= 0 or d <= 0:
        return 0.0
    e1 = c * (a + b) / (c + d)
    e2 = d * (a + b) / (c + d)
    total = 0.0
    if a > 0 and e1 > 0:
        total += a * math.log(a / e1)
    if b > 0 and e2 > 0:
        total += b * math.log(b / e2)
    return 2 * total


def build(
    counters: Iterable[tuple[str, int]],
    *,
    cost: Mapping[str, float] | None = None,
    today: dt.date | None = None,
    tz: dt.tzinfo = dt.UTC,
) -> dict[str, Any]:
    """The document (without ``filter``) from counters: the minute counters in time order
    among themselves (as the index reads them), the others in any order."""
    table = cost_table(cost)
    totals: Counter[str] = Counter()
    minutes = _Minutes(tz)
    types: dict[str, Counter[str]] = defaultdict(Counter)
    type_images: dict[str, Counter[str]] = defaultdict(Counter)
    models: dict[str, Counter[str]] = defaultdict(Counter)
    params: dict[str, Counter[str]] = defaultdict(Counter)
    words: Counter[str] = Counter()
    grids: Counter[str] = Counter()
    follow_ups: Counter[str] = Counter()
    grids_followed = 0
    liked: Counter[str] = Counter()
    with_fields: Counter[str] = Counter()
    ranks: dict[str, Counter[int]] = defaultdict(Counter)
    terms: dict[str, Counter[str]] = defaultdict(Counter)
    priced: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0, 0.0])
    stream = iter(counters)
    item = next(stream, None)
    while item is not None:
        key, count = item
        kind, _, rest = key.partition("\t")
        if kind == "mi":
            # The minutes come together (they sort together): folded in one loop.
            item = minutes.fold(int(rest), count, stream)
            continue
        item = next(stream, None)
        if kind in ("jobs", "images", "undated"):
            totals[kind] += count
        elif kind == "ty":
            month, name = rest.split("\t", 1)
            types[month][name] += count
        elif kind == "tyi":
            month, name = rest.split("\t", 1)
            type_images[month][name] += count
        elif kind == "mv":
            month, model = rest.split("\t", 1)
            models[month][model] += count
        elif kind == "mp":
            month, name = rest.split("\t", 1)
            params[month][name] += count
        elif kind == "ml":
            words[rest] += count
        elif kind == "mg":
            grids[rest] += count
        elif kind == "mf":
            follow_ups[rest] += count
        elif kind == "g":
            grids_followed += count % 2 == 1 and count > 1
        elif kind == "lk":
            liked[rest] += count
        elif kind == "rf":
            with_fields[rest] += count
        elif kind == "rk":
            month, rank = rest.split("\t", 1)
            ranks[month][int(rank)] += count
        elif kind == "tm":
            month, term = rest.split("\t", 1)
            terms[month][term] += count
        elif kind == "c":
            month, job_type, speed, model, quality, video, draft = rest.split("\t")
            gpu = _minutes(table, job_type, model, quality, video == "video", draft == "draft")
            fast = gpu * table.get(f"speed.{speed}", 1.0)
            entry = priced[month]
            entry[0] += gpu * count
            entry[1] += fast * count
            entry[2] += count
    jobs_a_month: Counter[str] = Counter()
    for month, by_model in models.items():
        jobs_a_month[month] = sum(by_model.values())
    day_jobs: dict[str, int] = {}
    day_images: dict[str, int] = {}
    for number, (jobs, images) in minutes.by_day.items():
        name = (EPOCH + dt.timedelta(days=number)).isoformat()
        day_jobs[name], day_images[name] = jobs, images
    days = sorted(day_jobs)
    # Evolution's months are UTC months (their counters'): from the first to the last of them.
    dated = sorted(m for m in jobs_a_month if m != UNDATED)
    months = _months_between(dated[0], dated[-1]) if dated else []
    if today is None:
        today = dt.datetime.now(tz).date()
    return {
        "v": VERSION,
        "totals": {
            "jobs": totals["jobs"],
            "images": totals["images"],
            "undated": totals["undated"],
            "first": days[0] if days else None,
            "last": days[-1] if days else None,
            "days_active": len(days),
        },
        "activity": {
            "timezone": zone_name(tz),
            **_activity(
                day_jobs, day_images, minutes.hour_weekday, minutes.session_document(), today
            ),
        },
        "evolution": {
            "models": [
                {
                    "month": m,
                    "jobs": jobs_a_month[m],
                    "share": _shares(models.get(m, Counter()), jobs_a_month[m]),
                }
                for m in months
            ],
            "params": [
                {
                    "month": m,
                    "jobs": jobs_a_month[m],
                    "count": dict(sorted(params.get(m, Counter()).items())),
                    "share": _shares(params.get(m, Counter()), jobs_a_month[m]),
                }
                for m in months
            ],
            "prompt_words": [
                {
                    "month": m,
                    "mean": _round(words[m] / jobs_a_month[m]) if jobs_a_month[m] else None,
                }
                for m in months
            ],
            "follow_ups": {
                "grids": sum(grids.values()),
                "grids_followed": grids_followed,
                "share": _round(grids_followed / sum(grids.values())) if grids else None,
                "per_month": [
                    {"month": m, "grids": grids[m], "follow_ups": follow_ups[m]} for m in months
                ],
            },
        },
        "types": _types(types, type_images, months),
        "terms": _terms(terms, months, jobs_a_month),
        "ratings": _ratings(liked, with_fields, ranks, months),
        "cost": _cost(table, priced, months),
    }


def _shares(counts: Counter[str], jobs: int) -> dict[str, float]:
    if not jobs:
        return {}
    return {name: _round(n / jobs) for name, n in sorted(counts.items(), key=lambda kv: -kv[1])}


def _minutes(
    table: Mapping[str, float], job_type: str, model: str, quality: str, video: bool, draft: bool
) -> float:
    minutes = table.get(f"minutes.{job_type}", table.get("minutes.default", 1.0))
    minutes *= table.get(f"model.{model}", 1.0)
    minutes *= table.get(f"quality.{quality}", 1.0)
    if video:
        minutes *= table.get("video", 8.0)
    if draft:
        minutes *= table.get("draft", 1.0)
    return minutes


def _activity(
    day_jobs: dict[str, int],
    day_images: dict[str, int],
    hour_weekday: list[list[int]],
    sessions: dict[str, Any],
    today: dt.date,
) -> dict[str, Any]:
    days = sorted(day_jobs)
    per_day: list[dict[str, Any]] = []
    weeks: dict[str, list[int]] = {}
    months: dict[str, list[int]] = {}
    heatmap: list[dict[str, Any]] = []
    if days:
        first, last = dt.date.fromisoformat(days[0]), dt.date.fromisoformat(days[-1])
        active = sorted(n for n in day_jobs.values() if n > 0)
        quartiles = [active[min(len(active) - 1, len(active) * q // 4)] for q in (1, 2, 3)]
        for m in _months_between(days[0][:7], days[-1][:7]):
            months[m] = [0, 0]
        day = first
        while day <= last:
            name = day.isoformat()
            jobs, images = day_jobs.get(name, 0), day_images.get(name, 0)
            per_day.append({"day": name, "jobs": jobs, "images": images})
            iso = day.isocalendar()
            week = weeks.setdefault(f"{iso.year:04d}-W{iso.week:02d}", [0, 0])
            week[0] += jobs
            week[1] += images
            months[name[:7]][0] += jobs
            months[name[:7]][1] += images
            level = 0 if jobs == 0 else 1 + sum(jobs > q for q in quartiles)
            heatmap.append({"day": name, "weekday": day.weekday(), "jobs": jobs, "level": level})
            day += dt.timedelta(days=1)
    return {
        "per_day": per_day,
        "per_week": [{"week": w, "jobs": c[0], "images": c[1]} for w, c in weeks.items()],
        "per_month": [{"month": m, "jobs": c[0], "images": c[1]} for m, c in months.items()],
        "heatmap": heatmap,
        "streaks": _streaks(days, today),
        "hour_weekday": hour_weekday,
        "sessions": sessions,
    }


def _streaks(days: list[str], today: dt.date) -> dict[str, Any]:
    none: dict[str, Any] = {"days": 0, "start": None, "end": None}
    longest, run_start, previous = dict(none), None, None
    runs: list[tuple[dt.date, dt.date]] = []
    for name in days:
        day = dt.date.fromisoformat(name)
        if previous is None or day - previous != dt.timedelta(days=1):
            if previous is not None and run_start is not None:
                runs.append((run_start, previous))
            run_start = day
        previous = day
    if previous is not None and run_start is not None:
        runs.append((run_start, previous))
    for start, end in runs:
        length = (end - start).days + 1
        if length > longest["days"]:
            longest = {"days": length, "start": start.isoformat(), "end": end.isoformat()}
    current = dict(none)
    if runs and (today - runs[-1][1]).days in (0, 1):
        start, end = runs[-1]
        current = {
            "days": (end - start).days + 1,
            "start": start.isoformat(),
            "end": end.isoformat(),
        }
    return {"longest": longest, "current": current}


def _types(
    jobs: dict[str, Counter[str]], images: dict[str, Counter[str]], months: list[str]
) -> dict[str, Any]:
    whole: Counter[str] = Counter()
    whole_images: Counter[str] = Counter()
    for by_type in jobs.values():
        whole.update(by_type)
    for by_type in images.values():
        whole_images.update(by_type)
    order = sorted(whole, key=lambda name: (-whole[name], name))
    return {
        "total": [{"type": t, "jobs": whole[t], "images": whole_images[t]} for t in order],
        "per_month": [
            {
                "month": m,
                "jobs": {t: n for t in order if (n := jobs.get(m, Counter())[t])},
                "images": {t: n for t in order if (n := images.get(m, Counter())[t])},
            }
            for m in months
        ],
        "undated": {t: n for t in order if (n := jobs.get(UNDATED, Counter())[t])},
    }


def _top(counter: Counter[str], n: int = TOP_TERMS) -> list[list[Any]]:
    return [[t, c] for t, c in sorted(counter.items(), key=lambda kv: (-kv[1], kv[0]))[:n]]


def _terms(terms: dict[str, Counter[str]], months: list[str], jobs: Counter[str]) -> dict[str, Any]:
    whole: Counter[str] = Counter()
    for by_term in terms.values():
        whole.update(by_term)
    all_jobs = sum(jobs.values())
    top = [{"month": m, "terms": _top(terms.get(m, Counter()))} for m in months]
    trends = []
    for previous, month in zip(months, months[1:], strict=False):
        now, before = terms.get(month, Counter()), terms.get(previous, Counter())
        rising: list[dict[str, Any]] = []
        falling: list[dict[str, Any]] = []
        for term in set(now) | set(before):
            a, b = now[term], before[term]
            score = g2(a, b, jobs[month], jobs[previous])
            if score < G2_THRESHOLD:
                continue
            row = {"term": term, "count": a, "previous": b, "g2": _round(score)}
            # Rising: a larger share of this month's jobs than of the previous month's.
            (rising if a * jobs[previous] > b * jobs[month] else falling).append(row)
        trends.append(
            {
                "month": month,
                "previous": previous,
                "rising": _by_g2(rising),
                "falling": _by_g2(falling),
            }
        )
    signature = []
    for month in months:
        rows = []
        for term, a in terms.get(month, Counter()).items():
            rest_jobs = all_jobs - jobs[month]
            b = whole[term] - a
            score = g2(a, b, jobs[month], rest_jobs)
            if score >= G2_THRESHOLD and a * rest_jobs > b * jobs[month]:
                rows.append({"term": term, "count": a, "g2": _round(score)})
        signature.append({"month": month, "terms": _by_g2(rows)})
    return {
        "top": top,
        "trends": trends,
        "threshold": {"g2": G2_THRESHOLD, "p": G2_P},
        "signature": signature,
    }


def _by_g2(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(rows, key=lambda r: (-r["g2"], r["term"]))[:TOP_TERMS]


def _ratings(
    liked: Counter[str],
    with_fields: Counter[str],
    ranks: dict[str, Counter[int]],
    months: list[str],
) -> dict[str, Any]:
    jobs = sum(with_fields.values())
    ranking: Counter[int] = Counter()
    for by_rank in ranks.values():
        ranking.update(by_rank)
    per_month = []
    for m in months:
        ranked = sum(ranks.get(m, Counter()).values())
        total = sum(r * n for r, n in ranks.get(m, Counter()).items())
        per_month.append(
            {
                "month": m,
                "liked": liked[m],
                "ranked": ranked,
                "mean_rank": _round(total / ranked) if ranked else None,
            }
        )
    return {
        "jobs_with_record_fields": jobs,
        "liked": sum(liked.values()),
        "liked_share": _round(sum(liked.values()) / jobs) if jobs else None,
        "ranking": {str(r): n for r, n in sorted(ranking.items())},
        "per_month": per_month,
    }


def _cost(
    table: Mapping[str, float], priced: dict[str, list[float]], months: list[str]
) -> dict[str, Any]:
    price = table["price_per_fast_hour"] / 60
    gpu = sum(p[0] for p in priced.values())
    fast = sum(p[1] for p in priced.values())
    return {
        "estimate": True,
        "currency": "USD",
        "price_per_fast_hour": table["price_per_fast_hour"],
        "table": dict(table),
        "gpu_minutes": _round(gpu),
        "fast_minutes": _round(fast),
        "total": _round(fast * price),
        "undated": _round(priced[UNDATED][1] * price) if UNDATED in priced else 0.0,
        "per_month": [
            {
                "month": m,
                "gpu_minutes": _round(priced[m][0]) if m in priced else 0.0,
                "fast_minutes": _round(priced[m][1]) if m in priced else 0.0,
                "cost": _round(priced[m][1] * price) if m in priced else 0.0,
            }
            for m in months
        ],
    }


__all__ = ["PARAMS", "insights", "build", "kept", "cost_table", "g2", "zone"]
