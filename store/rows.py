"""Row-level helpers every part of the ledger writes through: reading a job (locked for the
transaction on PostgreSQL), inserting jobs and jobledger's own events, and keeping the
counters and the alert outbox in step with each state change."""

import hashlib
import random
from collections.abc import Iterable
from typing import TYPE_CHECKING

from . import states
from .connection import LedgerBase
from .ids import utcnow
from .reads import JOB_COLUMNS, JOB_FIELDS, job_from_row

if TYPE_CHECKING:
    from .ledger import NormalizedEvent


def lock_id(key: tuple) -> int:
    """Map a key to a signed 64-bit advisory lock id."""
    digest = hashlib.blake2b(repr(key).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


class JobRows(LedgerBase):
    """The helpers, shared by the notice, submission and quarantine methods of Ledger."""

    def _lock_keys(self, keys: Iterable[tuple]) -> None:
        """Take transaction-scoped advisory locks, in a fixed (sorted) order (PostgreSQL)."""
        ids = sorted({lock_id(k) for k in keys})
        if ids:
            self.conn.execute(
                "SELECT " + ", ".join(["pg_advisory_xact_lock(?)"] * len(ids)), tuple(ids)
            )

    def _fetch_job(self, where: str, params: tuple, *, lock: bool = False) -> dict | None:
        """Return one job's column values; with `lock`, hold its row until the commit."""
        sql = f"SELECT {JOB_COLUMNS} FROM jobs WHERE {where}"
        if lock:
            sql += self.backend.for_update
        row = self.conn.execute(sql, params).fetchone()
        return None if row is None else job_from_row(row)

    def _newest_for_media(
        self,
        media_id: str,
        where: str,
        params: tuple,
        *,
        or_else: tuple[str, tuple] | None = None,
    ) -> dict | None:
        """Return the newest job of a media matching `where`, its row held until the commit.

        With `or_else` (a condition and its parameters), the newest job matching that one
        when none matches `where`. The media's jobs are found first, by `media_id` alone,
        which only jobs_media can serve; the conditions then pick among those few rows, and
        the one that chose is checked again on the locked row, which may have changed
        meanwhile. Asked for `... AND kind = ? ORDER BY id DESC LIMIT 1` directly,
        PostgreSQL, misled by a young table's statistics, walked jobs_kind_id backwards
        through every job of the kind: 0.5 ms at 3,000 jobs, growing with the table, until
        autovacuum's first ANALYZE (bench/).
        """
        newest = f"(SELECT MAX(id) FROM media WHERE {where})"
        check, check_params = where, params
        if or_else is not None:
            check, check_params = or_else
            newest = f"COALESCE({newest}, (SELECT MAX(id) FROM media WHERE {check}))"
            params = params + check_params
        row = self.conn.execute(
            "WITH media AS MATERIALIZED (SELECT id, provider, service, kind, state,"
            f" provider_job_id FROM jobs WHERE media_id = ?) SELECT {JOB_COLUMNS} FROM jobs"
            f" WHERE id = {newest} AND {check}{self.backend.for_update}",
            (media_id, *params, *check_params),
        ).fetchone()
        return None if row is None else job_from_row(row)

    def _state_of(self, job_id: str | None) -> str | None:
        if job_id is None:
            return None
        row = self.conn.execute("SELECT state FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return row and row[0]

    def _insert_job(self, job: dict) -> None:
        self.conn.execute(
            f"INSERT INTO jobs ({JOB_COLUMNS}) VALUES ({','.join('?' * len(JOB_FIELDS))})",
            tuple(job[c] for c in JOB_FIELDS),
        )

    def _insert_local_event(
        self, job: dict, event_type: str, body: str, now: str, source: str = "submit"
    ) -> None:
        """Record what jobledger itself did to a job (a submission, its answer, a deadline)."""
        self.conn.execute(
            "INSERT INTO events (job_id, provider, service, source, event_type, verified, auth,"
            " state_after, received_at, occurred_at, payload)"
            " VALUES (?, ?, ?, ?, ?, 1, 'local', ?, ?, ?, ?)",
            (
                job["id"],
                job["provider"],
                job["service"],
                source,
                event_type,
                job["state"],
                now,
                now,
                body,
            ),
        )

    def _shard(self) -> int:
        """Pick the counter row this transaction adds to (always 0 on SQLite)."""
        shards = self.backend.counter_shards
        return random.randrange(shards) if shards > 1 else 0

    def _count_notice(
        self, source: str, event: "NormalizedEvent | None", outcome: str, provider: str = ""
    ) -> None:
        """Count one notice by source, provider, type and outcome (for /metrics)."""
        self.conn.execute(
            "INSERT INTO notice_counts (source, provider, event_type, outcome, shard, n)"
            " VALUES (?, ?, ?, ?, ?, 1)"
            " ON CONFLICT (source, provider, event_type, outcome, shard)"
            " DO UPDATE SET n = notice_counts.n + 1",
            (
                source,
                event.provider if event else provider,
                (event.event_type or "")[:64] if event else "",
                outcome,
                self._shard(),
            ),
        )

    def _state_changed(self, job: dict, old: str | None, new: str | None) -> None:
        """Keep `job_counts` in step with a state change, and queue its alert, in the
        caller's transaction: the outbox row commits or rolls back with the change itself.
        """
        if old == new:
            return
        if new in states.ALERTING:
            self.conn.execute(
                "INSERT INTO alerts (job_id, state, created_at, error_code, error_message)"
                " VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                (job["id"], new, utcnow(), job.get("error_code"), job.get("error_message")),
            )
        scope, shard = (job["provider"], job["service"], job["kind"]), self._shard()
        # In state order, so two transactions never take the same two rows the other way.
        for state, delta in sorted(((old, -1), (new, 1)), key=lambda c: c[0] or ""):
            if state is not None:
                self.conn.execute(
                    "INSERT INTO job_counts (provider, service, kind, state, shard, n)"
                    " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (provider, service, kind, state,"
                    " shard) DO UPDATE SET n = job_counts.n + excluded.n",
                    (*scope, state, shard, delta),
                )
