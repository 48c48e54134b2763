"""The ledger's write side: one transaction per notice, deduplicated, state advanced.

Everything that writes runs under `write_transaction` (`BEGIN IMMEDIATE`): a deferred
transaction that has read cannot always become a writer when another gunicorn worker
wrote meanwhile, and SQLite then fails at once instead of waiting (house style B1).
The hot path uses raw SQL on the sqlite3 connection; sqlite-utils' convenience methods
cost several times more per row and are kept for migrations and admin work.
"""

import contextlib
import fcntl
import json
import os
import sqlite3
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from sqlite_utils import Database

from . import states
from .errors import LedgerUnavailable, classify
from .health import HealthReads
from .identity import LedgerConnection, refuse_if_gone
from .ids import new_id, utcnow
from .migrations import migrations
from .quarantine import QuarantineStore
from .reads import JOB_COLUMNS, JOB_FIELDS, LedgerReads, job_from_row

BUSY_TIMEOUT_S = 5.0
_OPEN = tuple(states.OPEN)
_OPEN_SQL = ",".join("?" * len(_OPEN))


class NormalizedEvent(Protocol):
    """What the ledger needs from a parsed notice (see receiver.providers.base.Event)."""

    provider: str
    service: str
    event_type: str
    dedup_key: bytes | None
    kind: str | None
    provider_job_id: str | None
    media_id: str | None
    state: str | None
    occurred_at: str | None
    error_code: str | None
    error_message: str | None
    outputs: tuple
    preprocess: bool
    payload: str


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


@contextlib.contextmanager
def write_transaction(db: Database) -> Iterator[Database]:
    """Run a read-then-write block under `BEGIN IMMEDIATE`; commit, or roll back on error."""
    db.conn.execute("BEGIN IMMEDIATE")
    try:
        yield db
    except BaseException:
        db.rollback()
        raise
    db.commit()


def connect(
    path: str | Path, durability: str = "normal", *, create: bool = False
) -> sqlite3.Connection:
    """Open a connection with the ledger's pragmas (WAL is a property of the file, set once).

    The file is opened read-write or not at all. SQLite would otherwise fall back to a
    read-only connection, and create the `-wal` and `-shm` files with the read-only file's
    mode, so that writes keep failing after the ledger is writable again; or create an
    empty file where the ledger went missing. The connection remembers which file it
    opened (`check_identity`, see store/identity.py).

    :param durability: `normal` survives a process crash; `full` fsyncs every commit so an
      acknowledged notice also survives a power loss
    :param create: create the file if missing (migrations only)
    """
    refuse_if_gone(str(path))
    if os.path.exists(path) and not os.access(path, os.R_OK | os.W_OK):
        raise LedgerUnavailable(
            f"the ledger cannot take writes now: the file {path} is not writable", "read-only"
        )
    uri = Path(path).absolute().as_uri() + ("?mode=rwc" if create else "?mode=rw")
    conn = sqlite3.connect(
        uri, timeout=BUSY_TIMEOUT_S, check_same_thread=False, uri=True, factory=LedgerConnection
    )
    conn.remember_file(str(path))
    conn.execute("PRAGMA synchronous=" + ("FULL" if durability == "full" else "NORMAL"))
    conn.execute("PRAGMA temp_store=MEMORY")
    # 8 MiB per connection (a worker has one per thread): bounds worker RSS (bench/).
    conn.execute("PRAGMA cache_size=-8000")
    return conn


def _new_job(
    *,
    provider: str,
    service: str,
    kind: str,
    state: str | None,
    origin: str,
    now: str,
    provider_job_id: str | None = None,
    media_id: str | None = None,
    operation: str | None = None,
    params: str | None = None,
) -> dict:
    """Return the column values of a job not yet written (every column, in no order)."""
    return {
        "id": new_id(),
        "provider": provider,
        "service": service,
        "kind": kind,
        "provider_job_id": provider_job_id or None,
        "media_id": media_id or None,
        "state": state,
        "preprocess": None,
        "error_code": None,
        "error_message": None,
        "outputs": "[]",
        "origin": origin,
        "operation": operation,
        "params": params,
        "submitted_at": now,
        "updated_at": now,
        "finished_at": None,
        "last_event_at": None,
    }


def migrate(path: str | Path) -> list[str]:
    """Create or migrate the ledger at `path`; return the names of the migrations applied.

    Safe to run several times at once (a release step on two hosts, or twice): runs take
    turns on an flock of `<ledger>-migrate.lock`, so the second finds nothing pending.
    """
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with _exclusive(f"{path}-migrate.lock"):
        with Database(connect(path, create=True), execute_plugins=False) as db:
            _enable_wal(db.conn)
            pending = [m.name for m in migrations.pending(db)]
            migrations.apply(db)
    return pending


@contextlib.contextmanager
def _exclusive(lock_path: str) -> Iterator[None]:
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the flock


def _enable_wal(conn: sqlite3.Connection) -> None:
    # Switching to WAL needs the file to itself, and SQLite does not wait for that: a
    # service worker reading the ledger at that moment makes it fail at once with
    # SQLITE_BUSY. Migrations run rarely, so retry for a bounded time.
    deadline = time.monotonic() + BUSY_TIMEOUT_S
    while True:
        try:
            conn.execute("PRAGMA journal_mode=wal")
            return
        except sqlite3.OperationalError as e:
            if classify(e) is None or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def ledger_problem(path: str | Path) -> str | None:
    """Return why the ledger at `path` cannot be used yet, or None if it can.

    A missing file must not be opened (SQLite would create an empty one), nor one with
    pending migrations: every write would fail on a missing table or column.

    :raises LedgerUnavailable: this process saw the file deleted or replaced (store.identity)
    """
    refuse_if_gone(str(path))
    if not Path(path).is_file():
        return f"no ledger at {path}: run `flask --app wsgi init-db`"
    with Database(connect(path), execute_plugins=False) as db:
        pending = [m.name for m in migrations.pending(db)]
    if pending:
        return f"ledger at {path} needs {', '.join(pending)}: run `flask --app wsgi init-db`"
    return None


def open_ledger(path: str | Path, durability: str = "normal") -> "Ledger":
    """Open the ledger at `path` (already migrated). Use as a context manager to close it."""
    return Ledger(Database(connect(path, durability), execute_plugins=False))


class Ledger(QuarantineStore, HealthReads, LedgerReads):
    """All SQL of jobledger. Methods are named for what they mean, not for the SQL they run."""

    def __init__(self, db: Database):
        self.db = db
        self.conn = db.conn

    def __enter__(self) -> "Ledger":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection."""
        self.db.close()

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
        with write_transaction(self.db):
            return self._record(event, source, verified, auth, replay_of)

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
        with write_transaction(self.db):
            return [self._record(event, source, verified, auth, None) for event in events]

    def _record(self, event, source, verified, auth, replay_of) -> RecordResult:
        """Store and apply one notice in the caller's transaction."""
        now = utcnow()
        key = None if replay_of is not None else event.dedup_key
        if key is not None:
            original = self.conn.execute(
                "SELECT id, job_id FROM events WHERE dedup_key = ? AND duplicate_of IS NULL",
                (key,),
            ).fetchone()
            if original is not None:
                state = self._state_of(original[1])
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
                self._count_notice(source, event, "duplicate")
                return RecordResult(event_id, original[1], state, state, original[0], False)
        job, created = (None, False)
        if event.kind is not None:
            job, created = self._match_job(event, now)
        previous = None if (job is None or created) else job["state"]
        state = self._apply(job, created, event, now) if job is not None else None
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
        self._count_notice(source, event, "replayed" if replay_of else "recorded")
        return RecordResult(event_id, job and job["id"], state, previous, None, created)

    def _match_job(self, event: NormalizedEvent, now: str) -> tuple[dict, bool]:
        """Find the job a notice belongs to, or make a new external one."""
        where = "provider = ? AND service = ?"
        scope = (event.provider, event.service)
        if event.provider_job_id:
            job = self._fetch_job(
                f"provider_job_id = ? AND {where}", (event.provider_job_id, *scope)
            )
            if job is not None:
                return job, False
        if event.media_id:
            # A job we submitted whose API answer (with the job id) is not recorded yet,
            # or a notice such as TranscodeComplete that carries no job id at all.
            job = self._fetch_job(
                f"media_id = ? AND kind = ? AND {where} AND state IN ({_OPEN_SQL})"
                + (" AND provider_job_id IS NULL" if event.provider_job_id else "")
                + " ORDER BY id DESC LIMIT 1",
                (event.media_id, event.kind, *scope, *_OPEN),
            )
            if job is not None:
                if event.provider_job_id:
                    self.conn.execute(
                        "UPDATE jobs SET provider_job_id = ? WHERE id = ?",
                        (event.provider_job_id, job["id"]),
                    )
                    job["provider_job_id"] = event.provider_job_id
                return job, False
            if not event.provider_job_id and event.occurred_at:
                # A late or repeated notice about a video's job that already finished
                # belongs to that job, not to a new one that would never finish.
                job = self._fetch_job(
                    f"media_id = ? AND kind = ? AND {where} ORDER BY id DESC LIMIT 1",
                    (event.media_id, event.kind, *scope),
                )
                if job is not None and (job["last_event_at"] or "") >= event.occurred_at:
                    return job, False
        job = _new_job(
            provider=event.provider,
            service=event.service,
            kind=event.kind,
            state=None,
            origin="external",
            now=now,
            provider_job_id=event.provider_job_id,
            media_id=event.media_id,
        )
        return job, True

    def _apply(self, job: dict, created: bool, event: NormalizedEvent, now: str) -> str:
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

    # -- submissions ----------------------------------------------------------------------

    def begin_submission(
        self,
        *,
        provider: str,
        service: str,
        kind: str,
        operation: str,
        params: Mapping[str, Any],
        media_id: str | None = None,
        origin: str = "submitted",
    ) -> dict:
        """Record a job as `submitting` before its provider API is called.

        A crash between this and `finish_submission` leaves a visible `submitting` job,
        never a lost one.

        :param origin: `external` when the call acts on a job made elsewhere (a Live Stop of
          a stream the ledger did not know)
        """
        now = utcnow()
        body = json.dumps(dict(params), ensure_ascii=False, sort_keys=True)
        job = _new_job(
            provider=provider,
            service=service,
            kind=kind,
            state=states.SUBMITTING,
            origin=origin,
            now=now,
            media_id=media_id,
            operation=operation,
            params=body,
        )
        with write_transaction(self.db):
            self._insert_job(job)
            self._state_changed(job, None, states.SUBMITTING)
            self._insert_local_event(job, f"{operation}:request", body, now)
        return self.get_job(job["id"])

    def finish_submission(
        self,
        job_id: str,
        *,
        state: str,
        provider_job_id: str | None = None,
        error_code: str | None = None,
        error_message: str | None = None,
        response: Mapping[str, Any] | None = None,
        operation: str | None = None,
    ) -> dict:
        """Record the provider's answer to a submission.

        If a notice for `provider_job_id` beat this answer and created an external job,
        that job is merged into this one, so the submission and its notices end up on one
        job with the most advanced state of the two.
        """
        now = utcnow()
        with write_transaction(self.db):
            job = self._fetch_job("id = ?", (job_id,))
            if job is None:
                raise KeyError(job_id)
            if provider_job_id:
                early = self._fetch_job(
                    "provider_job_id = ? AND provider = ? AND service = ? AND id != ?",
                    (provider_job_id, job["provider"], job["service"], job_id),
                )
                if early is not None:
                    self._merge(early, into=job)
                job["provider_job_id"] = provider_job_id
            old = job["state"]
            new = states.advance(job["state"], state)
            if new == state and (error_code or error_message):
                job["error_code"], job["error_message"] = error_code, error_message
            if new in states.FINAL and job["finished_at"] is None:
                job["finished_at"] = now
            if new in states.TOGGLING:
                # An accepted Start/Stop is the stream's newest word: a poll answer from
                # before it cannot toggle it back.
                job["last_event_at"] = max(now, job["last_event_at"] or "")
            job["state"], job["updated_at"] = new, now
            self.conn.execute(
                "UPDATE jobs SET state = ?, provider_job_id = ?, error_code = ?,"
                " error_message = ?, finished_at = ?, updated_at = ?, outputs = ?,"
                " preprocess = ?, last_event_at = ? WHERE id = ?",
                (
                    new,
                    job["provider_job_id"],
                    job["error_code"],
                    job["error_message"],
                    job["finished_at"],
                    now,
                    job["outputs"],
                    job["preprocess"],
                    job["last_event_at"],
                    job_id,
                ),
            )
            self._state_changed(job, old, new)
            body = json.dumps(dict(response or {}), ensure_ascii=False, sort_keys=True)
            self._insert_local_event(job, f"{operation or job['operation']}:response", body, now)
        return self.get_job(job_id)

    def _merge(self, early: dict, into: dict) -> None:
        """Fold a job created by an early notice into the submitted job it belongs to."""
        self.conn.execute(
            "UPDATE events SET job_id = ? WHERE job_id = ?", (into["id"], early["id"])
        )
        self.conn.execute("DELETE FROM jobs WHERE id = ?", (early["id"],))
        self.conn.execute(
            "UPDATE OR IGNORE alerts SET job_id = ? WHERE job_id = ?", (into["id"], early["id"])
        )
        self.conn.execute("DELETE FROM alerts WHERE job_id = ?", (early["id"],))
        self._state_changed(early, early["state"], None)
        merged = states.advance(into["state"], early["state"])
        if merged == early["state"]:
            for field in ("outputs", "error_code", "error_message", "finished_at"):
                into[field] = early[field]
        into["preprocess"] = early["preprocess"] or into["preprocess"]
        into["last_event_at"] = (
            max(early["last_event_at"] or "", into["last_event_at"] or "") or None
        )
        self._state_changed(into, into["state"], merged)
        into["state"] = merged

    def time_out(self, job_id: str, deadline_s: int) -> bool:
        """Mark a job `timed_out` (and queue its alert) unless it got a word meanwhile."""
        now = utcnow()
        with write_transaction(self.db):
            job = self._fetch_job("id = ?", (job_id,))
            if job is None or states.advance(job["state"], states.TIMED_OUT) != states.TIMED_OUT:
                return False
            old = job["state"]
            job.update(
                state=states.TIMED_OUT,
                updated_at=now,
                error_code="DeadlineExceeded",
                error_message=f"no final word within {deadline_s} s of submission",
            )
            self.conn.execute(
                "UPDATE jobs SET state = ?, error_code = ?, error_message = ?, updated_at = ?"
                " WHERE id = ?",
                (job["state"], job["error_code"], job["error_message"], now, job_id),
            )
            self._state_changed(job, old, states.TIMED_OUT)
            body = json.dumps({"deadline_s": deadline_s, "submitted_at": job["submitted_at"]})
            self._insert_local_event(job, "DeadlineExceeded", body, now, source="poll")
        return True

    def link_resubmission(self, job_id: str, resubmitted_from: str) -> None:
        """Record that `job_id` was submitted again from the failed job `resubmitted_from`."""
        with write_transaction(self.db):
            self.conn.execute(
                "UPDATE jobs SET resubmitted_from = ? WHERE id = ?", (resubmitted_from, job_id)
            )
            old = self._fetch_job("id = ?", (resubmitted_from,))
            if old is not None:
                body = json.dumps({"resubmitted_as": job_id})
                self._insert_local_event(old, "Resubmitted", body, utcnow())

    def note(self, job_id: str, event_type: str, body: Mapping[str, Any]) -> dict:
        """Put something jobledger did on a job's timeline without changing its state
        (a request on a known Live stream, a refused Start/Stop).

        :raises KeyError: no such job
        """
        with write_transaction(self.db):
            job = self._fetch_job("id = ?", (job_id,))
            if job is None:
                raise KeyError(job_id)
            text = json.dumps(dict(body), ensure_ascii=False, sort_keys=True)
            self._insert_local_event(job, event_type, text, utcnow())
        return self.get_job(job_id)

    # -- quarantine -----------------------------------------------------------------------

    def quarantine(
        self,
        *,
        provider: str,
        service: str,
        source: str,
        body: bytes | str,
        reason: str,
        verified: bool,
        auth: str | None = None,
        meta: Mapping[str, Any] | None = None,
    ) -> int:
        """Keep an authenticated body that could not be parsed, for `replay --quarantined`."""
        if isinstance(body, str):
            body = body.encode("utf-8", "surrogateescape")
        with write_transaction(self.db):
            self._count_notice(source, None, "quarantined", provider=provider)
            cursor = self.conn.execute(
                "INSERT INTO quarantine (received_at, provider, service, source, reason, body,"
                " meta, verified, auth) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    utcnow(),
                    provider,
                    service,
                    source,
                    reason,
                    body,
                    json.dumps(dict(meta or {}), ensure_ascii=False),
                    int(verified),
                    auth,
                ),
            )
        return cursor.lastrowid

    def mark_replayed(self, quarantine_id: int, event_id: int) -> None:
        """Note that a quarantined body has been parsed and recorded as `event_id`."""
        self.conn.execute(
            "UPDATE quarantine SET replayed_at = ?, replay_event_id = ? WHERE id = ?",
            (utcnow(), event_id, quarantine_id),
        )
        self.conn.commit()

    # -- helpers --------------------------------------------------------------------------

    def _fetch_job(self, where: str, params: tuple) -> dict | None:
        row = self.conn.execute(f"SELECT {JOB_COLUMNS} FROM jobs WHERE {where}", params).fetchone()
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
            " payload) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
        ).lastrowid

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

    def _count_notice(
        self, source: str, event: NormalizedEvent | None, outcome: str, provider: str = ""
    ) -> None:
        """Count one notice by source, provider, type and outcome (for /metrics)."""
        self.conn.execute(
            "INSERT INTO notice_counts (source, provider, event_type, outcome, n)"
            " VALUES (?, ?, ?, ?, 1)"
            " ON CONFLICT (source, provider, event_type, outcome) DO UPDATE SET n = n + 1",
            (
                source,
                event.provider if event else provider,
                (event.event_type or "")[:64] if event else "",
                outcome,
            ),
        )

    def _state_changed(self, job: Mapping, old: str | None, new: str | None) -> None:
        """Keep `job_counts` in step with a state change, and queue its alert, in the
        caller's transaction: the outbox row commits or rolls back with the change itself.
        """
        if old == new:
            return
        if new in states.ALERTING:
            self.conn.execute(
                "INSERT OR IGNORE INTO alerts (job_id, state, created_at, error_code,"
                " error_message) VALUES (?, ?, ?, ?, ?)",
                (job["id"], new, utcnow(), job.get("error_code"), job.get("error_message")),
            )
        scope = (job["provider"], job["service"], job["kind"])
        for state, delta in ((old, -1), (new, 1)):
            if state is not None:
                self.conn.execute(
                    "INSERT INTO job_counts (provider, service, kind, state, n)"
                    " VALUES (?, ?, ?, ?, ?)"
                    " ON CONFLICT (provider, service, kind, state) DO UPDATE SET n = n + ?",
                    (*scope, state, delta, delta),
                )
