"""The ledger's write side: one transaction per notice, deduplicated, state advanced.

Every write runs in one transaction (`LedgerBase._write`): on SQLite under `BEGIN
IMMEDIATE`, on PostgreSQL under row locks and transaction-scoped advisory locks taken in
a fixed order (advisory locks on the sorted keys first, then the job's row), so notices
for one job arriving on several hosts at once apply one after the other, and the same
notice delivered to several hosts is stored once. The hot path uses raw SQL on the
connection; sqlite-utils' convenience methods cost several times more per row and are
kept for SQLite migrations.
"""

import json
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Protocol

from sqlite_utils import Database

from . import states
from .alerts import AlertsMixin
from .backend import POSTGRES, SQLITE, Backend, is_url
from .connection import LedgerBase, connect
from .health import HealthReads
from .ids import utcnow
from .polls import PollsMixin
from .quarantine import QuarantineStore
from .quarantine_intake import QuarantineIntake
from .reads import LedgerReads
from .retention import RetentionMixin
from .rows import JobRows
from .submissions import SubmissionsMixin, new_job

_OPEN = tuple(states.OPEN)
_OPEN_SQL = ",".join("?" * len(_OPEN))


class NormalizedEvent(Protocol):
    """What the ledger needs from a parsed notice (see receiver.providers.base.Event).

    Read-only, as a frozen dataclass provides them.
    """

    @property
    def provider(self) -> str: ...

    @property
    def service(self) -> str: ...

    @property
    def event_type(self) -> str: ...

    @property
    def dedup_key(self) -> bytes | None: ...

    @property
    def kind(self) -> str | None: ...

    @property
    def provider_job_id(self) -> str | None: ...

    @property
    def media_id(self) -> str | None: ...

    @property
    def state(self) -> str | None: ...

    @property
    def occurred_at(self) -> str | None: ...

    @property
    def error_code(self) -> str | None: ...

    @property
    def error_message(self) -> str | None: ...

    @property
    def outputs(self) -> tuple: ...

    @property
    def preprocess(self) -> bool: ...

    @property
    def payload(self) -> str: ...


@dataclass(frozen=True)
class RecordResult:
    """What recording one notice did."""

    event_id: int
    job_id: str | None
    state: str | None
    previous_state: str | None
    duplicate_of: int | None
    created_job: bool

    @property
    def changed(self) -> bool:
        """Tell whether the job's state moved."""
        return self.state != self.previous_state


def open_ledger(database: str | Path, durability: str = "normal") -> "Ledger":
    """Open the ledger (already migrated). Use as a context manager to close it.

    :param database: an SQLite file path, or a postgresql:// URL (one connection; web
      workers borrow theirs from a pool instead, see receiver/db.py)
    :param durability: SQLite only; PostgreSQL's is the server's `synchronous_commit`
    :raises LedgerUnavailable: the PostgreSQL server cannot be reached
    """
    if is_url(database):
        from .pg import connect as connect_pg

        return Ledger(connect_pg(str(database)), POSTGRES)
    return Ledger(Database(connect(database, durability), execute_plugins=False))


class Ledger(
    SubmissionsMixin,
    QuarantineIntake,
    QuarantineStore,
    AlertsMixin,
    PollsMixin,
    RetentionMixin,
    HealthReads,
    JobRows,
    LedgerReads,
    LedgerBase,
):
    """All SQL of jobledger. Methods are named for what they mean, not for the SQL they run.

    :param db: a sqlite-utils Database (SQLite), or a store.pg.PgConnection (PostgreSQL)
    """

    def __init__(self, db: Any, backend: Backend = SQLITE):
        self.backend = backend
        if backend is SQLITE:
            self.db, self.conn = db, db.conn
        else:
            self.db, self.conn = None, db

    def __enter__(self) -> "Ledger":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection (or give it back to its pool)."""
        (self.db or self.conn).close()

    # -- notices --------------------------------------------------------------------------

    def record_event(
        self,
        event: NormalizedEvent,
        *,
        source: str,
        verified: bool,
        auth: str | None = None,
        replay_of: int | None = None,
    ) -> RecordResult:
        """Store one notice and apply it to its job, in one transaction.

        A notice whose dedup key was seen before is stored as a duplicate of the first one
        and changes nothing. `replay_of` re-applies a stored event (after a parser fix): it
        skips the duplicate check but still cannot move a final state back.

        :param source: `http`, `mns`, `pull`, `poll` or `submit`
        :param verified: whether a signature or the hook token authenticated the sender
        :param auth: how: `signature`, `token`, or `none`
        """
        return self._write(
            partial(
                self.record_in_transaction,
                event,
                source=source,
                verified=verified,
                auth=auth,
                replay_of=replay_of,
            ),
            pipelined=True,
        )

    def record_events(
        self,
        events: list[NormalizedEvent],
        *,
        source: str,
        verified: bool,
        auth: str | None = None,
    ) -> list[RecordResult]:
        """Record several notices in one transaction: all of them, or none if one raises.

        Queue consumers take notices 16 at a time and acknowledge them only after the
        commit; one commit per batch (one fsync under DURABILITY=full) instead of sixteen.
        Each result is what `record_event` would have returned for that notice in turn.
        """

        def record_all() -> list[RecordResult]:
            return [
                self.record_in_transaction(event, source=source, verified=verified, auth=auth)
                for event in events
            ]

        # Not pipelined: notices of one batch lock their keys in batch order, so two
        # consumers can deadlock, and the retry of a transaction that met an error in
        # pipeline mode was not reliable (tests/test_consume_mns.py, several consumers).
        return self._write(record_all)

    def record_in_transaction(
        self,
        event: NormalizedEvent,
        *,
        source: str,
        verified: bool,
        auth: str | None = None,
        replay_of: int | None = None,
    ) -> RecordResult:
        """Store and apply one notice in the write transaction the caller has open.

        `record_event` is this in a transaction of its own; the group-commit writer calls it
        for each notice of a batch, inside one transaction, so both take exactly one path.
        Arguments as for `record_event`.
        """
        now = utcnow()
        key = None if replay_of is not None else event.dedup_key
        if self.backend.advisory_locks:
            self._lock_keys(_keys_of(event, key))
        if key is not None:
            original = self.conn.execute(
                "SELECT id, job_id FROM events WHERE dedup_key = ? AND duplicate_of IS NULL",
                (key,),
            ).fetchone()
            if original is not None:
                state = self._state_of(original[1])
                self._count_notice(source, event, "duplicate")
                event_id = self._insert_event(
                    event,
                    now,
                    source,
                    verified,
                    auth,
                    original[1],
                    state,
                    key,
                    duplicate_of=original[0],
                )
                return RecordResult(event_id, original[1], state, state, original[0], False)
        job: dict | None = None
        created = False
        if event.kind is not None:
            job, created = self._match_job(event, event.kind, now)
        previous = None if (job is None or created) else job["state"]
        state = self._apply(job, created, event, now) if job is not None else None
        # Counted before the event's INSERT, whose id is the one result this needs: on
        # PostgreSQL every write of the notice then goes out in one round trip.
        self._count_notice(source, event, "replayed" if replay_of else "recorded")
        event_id = self._insert_event(
            event,
            now,
            source,
            verified,
            auth,
            job and job["id"],
            state,
            key,
            replay_of=replay_of,
        )
        job_id = job["id"] if job is not None else None
        return RecordResult(event_id, job_id, state, previous, None, created)

    def _match_job(self, event: NormalizedEvent, kind: str, now: str) -> tuple[dict, bool]:
        """Find the job a notice belongs to, or make a new external one."""
        where = "provider = ? AND service = ?"
        scope = (event.provider, event.service)
        if event.provider_job_id:
            job = self._fetch_job(
                f"provider_job_id = ? AND {where}", (event.provider_job_id, *scope), lock=True
            )
            if job is not None:
                return job, False
        if event.media_id:
            # A job we submitted whose API answer (with the job id) is not recorded yet,
            # or a notice such as TranscodeComplete that carries no job id at all. Failing
            # that, a late or repeated notice about a video's job that already finished
            # belongs to that job, not to a new one that would never finish: both are
            # looked for in one statement.
            late = not event.provider_job_id and event.occurred_at
            job = self._newest_for_media(
                event.media_id,
                f"kind = ? AND {where} AND state IN ({_OPEN_SQL})"
                + (" AND provider_job_id IS NULL" if event.provider_job_id else ""),
                (kind, *scope, *_OPEN),
                or_else=(f"kind = ? AND {where}", (kind, *scope)) if late else None,
            )
            if job is not None and job["state"] in _OPEN:
                if event.provider_job_id:
                    self.conn.execute(
                        "UPDATE jobs SET provider_job_id = ? WHERE id = ?",
                        (event.provider_job_id, job["id"]),
                    )
                    job["provider_job_id"] = event.provider_job_id
                return job, False
            if job is not None and (job["last_event_at"] or "") >= (event.occurred_at or ""):
                return job, False
        job = new_job(
            provider=event.provider,
            service=event.service,
            kind=kind,
            state=None,
            origin="external",
            now=now,
            provider_job_id=event.provider_job_id,
            media_id=event.media_id,
        )
        return job, True

    def _apply(self, job: dict, created: bool, event: NormalizedEvent, now: str) -> str | None:
        """Advance `job` by `event` and write it; return the job's state afterwards."""
        old = job["state"]
        at = event.occurred_at or now
        incoming = (
            event.state if event.state is not None else (states.PROCESSING if created else None)
        )
        new = states.advance(old, incoming, newer=at >= (job["last_event_at"] or ""))
        progress = old is not None and old not in states.FINAL and incoming == old
        if not (created or new != old or progress):
            return old  # stale, or about a job that already has its final word
        if event.outputs:
            if new in states.FINAL and incoming == new:
                job["outputs"] = json.dumps(list(event.outputs), ensure_ascii=False)
            else:
                known = json.loads(job["outputs"] or "[]")
                known += [o for o in event.outputs if o not in known]
                job["outputs"] = json.dumps(known, ensure_ascii=False)
        if (event.error_code or event.error_message) and new == incoming:
            job["error_code"], job["error_message"] = event.error_code, event.error_message
        if event.preprocess:
            job["preprocess"] = 1
        if new in states.FINAL and old not in states.FINAL:
            job["finished_at"] = at
        job["last_event_at"] = max(at, job["last_event_at"] or "")
        job["state"], job["updated_at"] = new, now
        if created:
            self._insert_job(job)
        else:
            self.conn.execute(
                "UPDATE jobs SET state = ?, outputs = ?, error_code = ?, error_message = ?,"
                " preprocess = ?, finished_at = ?, last_event_at = ?, updated_at = ?,"
                " provider_job_id = ? WHERE id = ?",
                (
                    new,
                    job["outputs"],
                    job["error_code"],
                    job["error_message"],
                    job["preprocess"],
                    job["finished_at"],
                    job["last_event_at"],
                    now,
                    job["provider_job_id"],
                    job["id"],
                ),
            )
        self._state_changed(job, old, new)
        return new

    # -- helpers --------------------------------------------------------------------------

    def _insert_event(
        self,
        event,
        now,
        source,
        verified,
        auth,
        job_id,
        state,
        key,
        *,
        duplicate_of=None,
        replay_of=None,
    ) -> int:
        return self.conn.execute(
            "INSERT INTO events (job_id, provider, service, source, event_type, dedup_key,"
            " verified, auth, duplicate_of, replay_of, state_after, received_at, occurred_at,"
            " payload) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
            (
                job_id,
                event.provider,
                event.service,
                source,
                event.event_type,
                key,
                int(verified),
                auth,
                duplicate_of,
                replay_of,
                state,
                now,
                event.occurred_at,
                event.payload,
            ),
        ).fetchone()[0]


def _keys_of(event: NormalizedEvent, dedup_key: bytes | None) -> list[tuple]:
    """Return the advisory lock keys of a notice: its dedup key and its job's identities."""
    keys: list[tuple] = []
    if dedup_key is not None:
        keys.append(("dedup", dedup_key))
    if event.kind is not None:
        if event.provider_job_id:
            keys.append(("job", event.provider, event.service, event.provider_job_id))
        if event.media_id:
            keys.append(("media", event.provider, event.service, event.kind, event.media_id))
    return keys
