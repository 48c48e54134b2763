"""Provider health: settled jobs tallied per hour, cumulative counters, and the snapshot.

Nothing here runs on the notice path. A job's row already carries what health needs
(`settled_at`, its state, `duration_seconds`, written by the UPDATE that settles it); the
background pass (receiver/background/health.py) then:

1. **counts** the jobs settled since a watermark and more than a lag ago, once each: into
   per-hour tallies (`health_hours`: finished, failed, a log-bucket histogram of
   durations) and cumulative counters (`health_totals`, for /metrics). The watermark
   (`ledger_meta`) moves in the same transaction, under the write lock (an advisory lock
   on PostgreSQL), so several `reconcile` processes count each job once;
2. **reads** the tallies of the baseline's whole hours and the jobs settled since, straight
   from `jobs_settled`: the window is always exact;
3. **publishes** a snapshot row per provider, service and kind (`provider_health`), and
   queues one alert when an anomaly starts and one when it ends, in the transaction that
   flips it, so however many processes judge it, each is queued once.

The API and the dashboard read the snapshot: a few rows, whatever the ledger's size.
"""

import json
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from . import states
from .alerts import queue_alert
from .ids import iso
from .notices import job_start, lock_keys
from .session import Part, Session

WATERMARK = "health_counted_through"
GENERATED = "health_generated_at"
# Durations go into buckets 2^(1/8) apart: a percentile read from them is within 4.5 % of
# the exact one (the bucket's geometric middle is reported).
PER_OCTAVE = 8
# Which settled jobs have a time to complete: the provider worked on them to an end. A
# refused submission took no processing, a timed-out job has no finish.
TIMED = frozenset({states.SUCCEEDED, states.PARTIAL, states.FAILED})
# Prometheus histogram buckets (seconds): media jobs take seconds to hours.
PROM_BUCKETS = (5, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 14400, 28800, 86400)
# One counting transaction covers at most this much time, so a first pass over a week
# never holds the write lock long.
SLICE = timedelta(hours=1)
_GROUP = ("provider", "service", "kind")
_SNAPSHOT = (
    "provider, service, kind, window_finished, window_failed, baseline_finished,"
    " baseline_failed, p50, p95, p99, duration_count, slow_jobs, anomaly, anomaly_reason,"
    " anomaly_since,"
    " anomaly_seen_at, generated_at"
)
_SNAPSHOT_FIELDS = tuple(_SNAPSHOT.split(", "))


def bucket_of(seconds: float) -> int:
    """Return the histogram bucket of a duration (a millisecond or less share one)."""
    return math.floor(PER_OCTAVE * math.log2(max(seconds, 0.001)))


def bucket_value(bucket: int) -> float:
    """Return the duration a bucket stands for: its geometric middle."""
    return 2 ** ((bucket + 0.5) / PER_OCTAVE)


def quantiles(histogram: dict[int, int], qs: Iterable[float]) -> list[float | None]:
    """Return the nearest-rank quantiles of a bucket histogram (None when it is empty)."""
    total = sum(histogram.values())
    if not total:
        return [None for _ in qs]
    order = sorted(histogram.items())
    out: list[float | None] = []
    for q in qs:
        rank, seen = max(1, math.ceil(q * total)), 0
        for bucket, n in order:
            seen += n
            if seen >= rank:
                out.append(round(bucket_value(bucket), 3))
                break
    return out


def hour_of(stamp: str) -> str:
    """Return the hour key of a ledger timestamp: `2026-11-21T05`."""
    return stamp[:13]


@dataclass
class Tally:
    """Settled jobs of one group over some span: how many, how many failed, and durations."""

    finished: int = 0
    failed: int = 0
    durations: dict[int, int] = field(default_factory=dict)

    def add_job(self, state: str, duration: float | None) -> None:
        """Count one settled job."""
        self.finished += 1
        self.failed += state in states.ALERTING
        if duration is not None and state in TIMED:
            bucket = bucket_of(duration)
            self.durations[bucket] = self.durations.get(bucket, 0) + 1

    def add(self, other: "Tally") -> None:
        """Fold another tally into this one."""
        self.finished += other.finished
        self.failed += other.failed
        for bucket, n in other.durations.items():
            self.durations[bucket] = self.durations.get(bucket, 0) + n


def _durations(text: str | None) -> dict[int, int]:
    return {int(k): v for k, v in json.loads(text or "{}").items()}


class ProviderHealth(Part):
    """Tallies, counters and the snapshot of provider health (the ledger's `provider_health`
    part)."""

    # -- counting, once per job ---------------------------------------------------------

    def count_settled(self, through: datetime, start: datetime) -> str:
        """Count the jobs settled before `through` that were not counted yet; return the
        watermark (everything settled before it is counted).

        :param start: where counting starts on a ledger never counted before
        """
        while True:
            mark = self.write(self._count_slice, iso(through), iso(start))
            if mark >= iso(through):
                return mark

    def _count_slice(self, through: str, start: str) -> str:
        if self.backend.advisory_locks:
            lock_keys(self.session, [("provider_health",)])
        row = self.conn.execute(
            "SELECT value FROM ledger_meta WHERE key = ?", (WATERMARK,)
        ).fetchone()
        mark = row[0] if row else start
        if mark >= through:
            return mark
        moment = datetime.fromisoformat(mark.replace("Z", "+00:00"))
        end = min(through, iso(moment + SLICE))
        rows = self.conn.execute(
            f"SELECT provider, service, kind, state, duration_seconds, settled_at"
            f" FROM jobs{self.backend.hint('jobs_settled')}"
            " WHERE settled_at >= ? AND settled_at < ?",
            (mark, end),
        ).fetchall()
        hours: dict[tuple, Tally] = {}
        for provider, service, kind, state, duration, settled in rows:
            key = (hour_of(settled), provider, service, kind)
            hours.setdefault(key, Tally()).add_job(state, duration)
        self._add_hours(hours)
        self._add_totals(rows)
        self.conn.execute(
            "INSERT INTO ledger_meta (key, value) VALUES (?, ?)"
            " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (WATERMARK, end),
        )
        return end

    def _add_hours(self, hours: dict[tuple, Tally]) -> None:
        for key, tally in sorted(hours.items()):
            row = self.conn.execute(
                "SELECT finished, failed, durations FROM health_hours"
                " WHERE hour = ? AND provider = ? AND service = ? AND kind = ?",
                key,
            ).fetchone()
            if row is not None:
                tally.add(Tally(row[0], row[1], _durations(row[2])))
            self.conn.execute(
                "INSERT INTO health_hours (hour, provider, service, kind, finished, failed,"
                " durations) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (hour, provider, service,"
                " kind) DO UPDATE SET finished = excluded.finished, failed = excluded.failed,"
                " durations = excluded.durations",
                (*key, tally.finished, tally.failed, json.dumps(tally.durations)),
            )

    def _add_totals(self, rows: list[tuple]) -> None:
        totals: dict[tuple, float] = {}
        for provider, service, kind, state, duration, _ in rows:
            names = [f"outcome:{state}"]
            if duration is not None and state in TIMED:
                names += ["duration:count"] + [f"le:{b}" for b in PROM_BUCKETS if duration <= b]
                totals[(provider, service, kind, "duration:sum")] = (
                    totals.get((provider, service, kind, "duration:sum"), 0.0) + duration
                )
            for name in names:
                key = (provider, service, kind, name)
                totals[key] = totals.get(key, 0.0) + 1
        self.conn.executemany(
            "INSERT INTO health_totals (provider, service, kind, name, n) VALUES (?, ?, ?, ?, ?)"
            " ON CONFLICT (provider, service, kind, name) DO UPDATE"
            " SET n = health_totals.n + excluded.n",
            [(*key, n) for key, n in sorted(totals.items())],
        )

    def prune(self, before: datetime) -> int:
        """Drop hourly tallies older than `before` (the counters keep their totals)."""
        return self.write(
            lambda: (
                self.conn.execute(
                    "DELETE FROM health_hours WHERE hour < ?", (hour_of(iso(before)),)
                ).rowcount
            )
        )

    # -- reading what a judgement needs -------------------------------------------------

    def hours(self, first_hour: str, before_hour: str) -> dict[tuple, dict[str, Tally]]:
        """Return the tallies of hours in [first_hour, before_hour): group -> hour -> Tally."""
        out: dict[tuple, dict[str, Tally]] = {}
        rows = self.conn.execute(
            "SELECT hour, provider, service, kind, finished, failed, durations FROM health_hours"
            " WHERE hour >= ? AND hour < ?",
            (first_hour, before_hour),
        )
        for hour, provider, service, kind, finished, failed, durations in rows:
            group = out.setdefault((provider, service, kind), {})
            group[hour] = Tally(finished, failed, _durations(durations))
        return out

    def settled_since(self, since: str, until: str) -> list[tuple]:
        """Return (provider, service, kind, state, duration, settled_at) of the jobs settled
        from `since` up to `until` included, from the `jobs_settled` index."""
        return self.conn.execute(
            "SELECT provider, service, kind, state, duration_seconds, settled_at"
            f" FROM jobs{self.backend.hint('jobs_settled')}"
            " WHERE settled_at >= ? AND settled_at <= ?",
            (since, until),
        ).fetchall()

    def totals(self) -> list[tuple]:
        """Return the cumulative counters: (provider, service, kind, name, n)."""
        return self.conn.execute(
            "SELECT provider, service, kind, name, n FROM health_totals"
            " ORDER BY provider, service, kind, name"
        ).fetchall()

    # -- the snapshot -------------------------------------------------------------------

    def generated_at(self) -> str | None:
        """Return when the snapshot was last published, or None if it never was."""
        row = self.conn.execute(
            "SELECT value FROM ledger_meta WHERE key = ?", (GENERATED,)
        ).fetchone()
        return row[0] if row else None

    def hourly(self, first_hour: str) -> list[tuple]:
        """Return (hour, provider, service, finished, failed) per hour since `first_hour`."""
        return self.conn.execute(
            "SELECT hour, provider, service, CAST(SUM(finished) AS BIGINT),"
            " CAST(SUM(failed) AS BIGINT) FROM health_hours WHERE hour >= ?"
            " GROUP BY hour, provider, service ORDER BY hour",
            (first_hour,),
        ).fetchall()

    def snapshot(self) -> list[dict]:
        """Return the latest snapshot: one dict per provider, service and kind."""
        rows = self.conn.execute(
            f"SELECT {_SNAPSHOT} FROM provider_health ORDER BY provider, service, kind"
        )
        return [dict(zip(_SNAPSHOT_FIELDS, row, strict=True)) for row in rows]

    def publish(
        self,
        groups: list[dict],
        now: datetime,
        clear_after: timedelta,
        words: Callable[[dict, str], tuple[str, dict]],
    ) -> list[str]:
        """Replace the snapshot with `groups` and queue the alerts of anomalies that start or
        end; return the alert kinds queued.

        Each group carries the snapshot's columns and `anomalous` (the rule's verdict now).
        An anomaly starts the first time the rule holds, and ends once it has not held for
        `clear_after`, so a rate hovering at the threshold does not flap.

        :param words: (group, alert kind) -> (summary, detail) of its alert
        """
        return self.write(self._publish, groups, iso(now), clear_after, words)

    def _publish(self, groups, now: str, clear_after: timedelta, words) -> list[str]:
        groups = list(groups)
        if self.backend.advisory_locks:
            lock_keys(self.session, [("provider_health",)])
        before = {tuple(g[k] for k in _GROUP): g for g in self.snapshot()}
        queued: list[str] = []
        fresh = {tuple(g[k] for k in _GROUP) for g in groups}
        for key, old in before.items():  # a group gone quiet is judged as not anomalous
            if key not in fresh and old["anomaly"]:
                groups.append({**old, "anomalous": False})
        for group in groups:
            key = tuple(group[k] for k in _GROUP)
            old = before.get(key) or {"anomaly": 0, "anomaly_since": None, "anomaly_seen_at": None}
            row = {**group, "generated_at": now}
            if group["anomalous"]:
                since = old["anomaly_since"] if old["anomaly"] else now
                row.update(anomaly=1, anomaly_since=since, anomaly_seen_at=now)
                if not old["anomaly"]:
                    queued += self._queue(row, "provider.anomaly.started", words)
            elif old["anomaly"] and not _cleared(old["anomaly_seen_at"], now, clear_after):
                row.update(
                    anomaly=1,
                    anomaly_since=old["anomaly_since"],
                    anomaly_seen_at=old["anomaly_seen_at"],
                    anomaly_reason=old["anomaly_reason"],
                )
            else:
                row.update(anomaly=0, anomaly_since=None, anomaly_seen_at=None)
                if old["anomaly"]:
                    ended = {**row, "anomaly_since": old["anomaly_since"]}
                    queued += self._queue(ended, "provider.anomaly.ended", words)
                row["anomaly_reason"] = None
            self._write_row(row)
        self.conn.execute("DELETE FROM provider_health WHERE generated_at != ?", (now,))
        self.conn.execute(
            "INSERT INTO ledger_meta (key, value) VALUES (?, ?)"
            " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (GENERATED, now),
        )
        return queued

    def _queue(self, row: dict, kind: str, words) -> list[str]:
        summary, detail = words(row, kind)
        what = "/".join(row[k] for k in _GROUP)
        subject = f"anomaly:{what}:{row['anomaly_since']}:{kind.rsplit('.', 1)[-1]}"
        queued = queue_alert(
            self.session, subject=subject, kind=kind, summary=summary, detail=detail
        )
        return [kind] if queued else []

    def _write_row(self, row: dict) -> None:
        values = tuple(row.get(f) for f in _SNAPSHOT_FIELDS)
        updates = ", ".join(f"{f} = excluded.{f}" for f in _SNAPSHOT_FIELDS[3:])
        self.conn.execute(
            f"INSERT INTO provider_health ({_SNAPSHOT}) VALUES"
            f" ({', '.join('?' * len(_SNAPSHOT_FIELDS))})"
            f" ON CONFLICT (provider, service, kind) DO UPDATE SET {updates}",
            values,
        )

    # -- slow jobs ----------------------------------------------------------------------

    def count_slow(self, cutoffs: dict[tuple, str]) -> dict[tuple, int]:
        """Return how many jobs of each group are slow, given `slow_cutoffs`."""
        where, params = slow_condition(cutoffs)
        if where is None:
            return {}
        rows = self.conn.execute(
            f"SELECT provider, service, kind, COUNT(*) FROM jobs{self.backend.hint(SLOW_INDEX)}"
            f" WHERE {where} GROUP BY provider, service, kind",
            params,
        )
        return {(p, s, k): n for p, s, k, n in rows}


# A job is slow past its kind's p95 once at least this many durations give that p95.
SLOW_MIN_JOBS = 20
RUNNING = ("submitting", "submitted", "processing")  # no final word, deadline not passed
SLOW_INDEX = "jobs_open_age"  # partial index of exactly the RUNNING jobs


def slow_cutoffs(session: Session, now: datetime) -> dict[tuple, str]:
    """Return, per group with a p95 from at least SLOW_MIN_JOBS durations (in the snapshot),
    the start time before which a job of that group still running is slow."""
    rows = session.conn.execute(
        "SELECT provider, service, kind, p95, duration_count FROM provider_health"
    ).fetchall()
    return cutoffs_of(
        [
            dict(zip(("provider", "service", "kind", "p95", "duration_count"), r, strict=True))
            for r in rows
        ],
        now,
    )


def cutoffs_of(groups: Iterable[dict], now: datetime) -> dict[tuple, str]:
    """Return the slow cutoffs of snapshot rows (see `slow_cutoffs`)."""
    return {
        (g["provider"], g["service"], g["kind"]): iso(now - timedelta(seconds=g["p95"]))
        for g in groups
        if g["p95"] is not None and (g["duration_count"] or 0) >= SLOW_MIN_JOBS
    }


def slow_condition(cutoffs: dict[tuple, str]) -> tuple[str | None, list]:
    """Return a WHERE condition (and its parameters) matching the slow jobs, or None when
    no kind has a p95 yet. It repeats `jobs_open_age`'s condition, so that small partial
    index serves it."""
    if not cutoffs:
        return None, []
    each = "(provider = ? AND service = ? AND kind = ? AND COALESCE(started_at, submitted_at) < ?)"
    params: list = []
    for group, cutoff in sorted(cutoffs.items()):
        params += [*group, cutoff]
    running = ", ".join(f"'{s}'" for s in RUNNING)
    return f"state IN ({running}) AND ({' OR '.join([each] * len(cutoffs))})", params


def is_slow(job: dict, cutoffs: dict[tuple, str]) -> bool:
    """Tell whether a job (record or row) is slow, given `slow_cutoffs`."""
    if job["state"] not in RUNNING:
        return False
    cutoff = cutoffs.get((job["provider"], job["service"], job["kind"]))
    return cutoff is not None and job_start(job) < cutoff


def _cleared(seen_at: str | None, now: str, clear_after: timedelta) -> bool:
    if not seen_at:
        return True
    seen = datetime.fromisoformat(seen_at.replace("Z", "+00:00"))
    return datetime.fromisoformat(now.replace("Z", "+00:00")) - seen >= clear_after
