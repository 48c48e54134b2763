"""The notice write path, top to bottom: one transaction per notice.

A provider notice, parsed into a normalized event, is recorded by `Notices.record`:

1. **lock** (PostgreSQL): transaction-scoped advisory locks on its dedup key and its job's
   identities, in a fixed order, so notices for one job arriving on several hosts apply one
   after the other and the same notice delivered to several hosts is stored once;
2. **deduplicate**: a notice whose dedup key was seen is stored as a duplicate of the first
   copy and changes nothing;
3. **match** it to its job (by provider job id, else the video's open job of its kind), or
   make a new `external` job;
4. **apply** it: the state machine (store/states.py) moves the job forward, never back;
5. **insert** the event row with its raw payload;
6. **count** it (for /metrics), keep the per-state job counters in step and queue the alert
   of a failure, all in the same transaction.

The row helpers at the bottom are also how jobledger's own changes (store/submissions.py)
write jobs, so a job changes state one way whoever changes it.
"""

import hashlib
import json
import math
import random
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from . import states
from .ids import new_id, utcnow
from .records import JOB_COLUMNS, JOB_FIELDS, job_from_row, public_job
from .session import Part, Session

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
    def started_at(self) -> str | None: ...

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


def new_job(
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
    metadata: str | None = None,
) -> dict:
    """Return the column values of a job not yet written (every column, in no order).

    :param metadata: the application's own JSON object, as text (None: `{}`)
    """
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
        "started_at": None,
        "settled_at": None,
        "duration_seconds": None,
        "metadata": metadata,
    }


class Notices(Part):
    """Recording provider notices (the ledger's `notices` part)."""

    def record(
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
        is not a duplicate of the event it replays, but a replay that reads exactly as an
        earlier replay of the same event did is, and changes nothing; and no replay can
        move a final state back.

        :param source: `http`, `mns`, `pull`, `poll` or `submit`
        :param verified: whether a signature or the hook token authenticated the sender
        :param auth: how: `signature`, `token`, or `none`
        """
        return self.write(
            self.record_in_transaction,
            event,
            source,
            verified,
            auth,
            replay_of,
            pipelined=True,
        )

    def record_many(
        self,
        events: list[NormalizedEvent],
        *,
        source: str,
        verified: bool,
        auth: str | None = None,
    ) -> list[RecordResult]:
        """Record several notices in one transaction: all of them, or none if one raises.

        Queue consumers acknowledge a batch only after its commit: one commit (one fsync
        under DURABILITY=full) per batch. Each result is what `record` would have returned
        for that notice in turn. Not pipelined: a batch locks its keys in batch order, so
        two consumers can deadlock, and that transaction is run again from the start.
        """

        def record_all() -> list[RecordResult]:
            return [self.record_in_transaction(e, source, verified, auth) for e in events]

        return self.write(record_all)

    def record_in_transaction(
        self,
        event: NormalizedEvent,
        source: str,
        verified: bool,
        auth: str | None = None,
        replay_of: int | None = None,
    ) -> RecordResult:
        """Store and apply one notice in the write transaction the caller has open.

        `record` is this in a transaction of its own; the group commit (store/writer.py)
        and `record_many` call it for each notice of a batch, so all take exactly one path.
        """
        now = utcnow()
        key = event.dedup_key if replay_of is None else _replay_key(event, replay_of)
        if self.backend.advisory_locks:
            lock_keys(self.session, _keys_of(event, key))
        duplicate = self._duplicate(event, key, now, source, verified, auth, replay_of)
        if duplicate is not None:
            return duplicate
        job: dict | None = None
        created = False
        if event.kind is not None:
            job, created = self._match(event, event.kind, now)
        previous = None if (job is None or created) else job["state"]
        state = self._apply(job, created, event, now) if job is not None else None
        # Counted before the event's INSERT, whose id is the one result this needs: on
        # PostgreSQL every write of the notice then goes out in one round trip.
        count_notice(self.session, source, event, "replayed" if replay_of else "recorded")
        job_id = job["id"] if job is not None else None
        row = _EventRow(event, now, source, verified, auth, job_id, state, key, None, replay_of)
        return RecordResult(self._insert(row), job_id, state, previous, None, created)

    # -- deduplicate ------------------------------------------------------------------------

    def _duplicate(
        self,
        event: NormalizedEvent,
        key: bytes | None,
        now: str,
        source: str,
        verified: bool,
        auth: str | None,
        replay_of: int | None,
    ) -> RecordResult | None:
        """Store `event` as a duplicate if its key was seen; return what that did, or None."""
        if key is None:
            return None
        original = self.conn.execute(
            "SELECT id, job_id FROM events WHERE dedup_key = ? AND duplicate_of IS NULL", (key,)
        ).fetchone()
        if original is None:
            return None
        first_id, job_id = original
        state = self._state_of(job_id)
        count_notice(self.session, source, event, "duplicate")
        row = _EventRow(event, now, source, verified, auth, job_id, state, key, first_id, replay_of)
        return RecordResult(self._insert(row), job_id, state, state, first_id, False)

    def _state_of(self, job_id: str | None) -> str | None:
        if job_id is None:
            return None
        row = self.conn.execute("SELECT state FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return row and row[0]

    # -- match ------------------------------------------------------------------------------

    def _match(self, event: NormalizedEvent, kind: str, now: str) -> tuple[dict, bool]:
        """Find the job a notice belongs to, or make a new external one (not yet written)."""
        where = "provider = ? AND service = ?"
        scope = (event.provider, event.service)
        if event.provider_job_id:
            job = fetch_job(
                self.session,
                f"provider_job_id = ? AND {where}",
                (event.provider_job_id, *scope),
                lock=True,
            )
            if job is not None:
                return job, False
        if event.media_id:
            job = self._match_media(event, kind, where, scope)
            if job is not None:
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

    def _match_media(
        self, event: NormalizedEvent, kind: str, where: str, scope: tuple
    ) -> dict | None:
        """Return the video's job this notice belongs to, or None.

        That is the video's newest open job of the kind: a job we submitted whose API
        answer (with the job id) is not recorded yet, or the job of a notice such as
        TranscodeComplete that carries no job id at all. Failing that, a late or repeated
        notice about a video's job that already finished belongs to that job, not to a new
        one that would never finish: both are looked for in one statement.
        """
        late = not event.provider_job_id and event.occurred_at
        job = newest_for_media(
            self.session,
            event.media_id or "",
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
            return job
        if job is not None and (job["last_event_at"] or "") >= (event.occurred_at or ""):
            return job
        return None

    # -- apply ------------------------------------------------------------------------------

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
        _merge_notice(job, event, incoming, new)
        if new in states.FINAL and old not in states.FINAL:
            job["finished_at"] = at
        job["last_event_at"] = max(at, job["last_event_at"] or "")
        job["state"], job["updated_at"] = new, now
        if created:
            insert_job(self.session, job)
        else:
            update_job(self.session, job)
        state_changed(self.session, job, old, new)
        return new

    # -- insert -----------------------------------------------------------------------------

    def _insert(self, row: "_EventRow") -> int:
        """Insert one event row; return its id."""
        event = row.event
        return self.conn.execute(
            "INSERT INTO events (job_id, provider, service, source, event_type, dedup_key,"
            " verified, auth, duplicate_of, replay_of, state_after, received_at, occurred_at,"
            " payload) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
            (
                row.job_id,
                event.provider,
                event.service,
                row.source,
                event.event_type,
                row.key,
                int(row.verified),
                row.auth,
                row.duplicate_of,
                row.replay_of,
                row.state,
                row.now,
                event.occurred_at,
                event.payload,
            ),
        ).fetchone()[0]


@dataclass(frozen=True)
class _EventRow:
    """One `events` row about to be written: the notice and what recording it decided."""

    event: NormalizedEvent
    now: str
    source: str
    verified: bool
    auth: str | None
    job_id: str | None
    state: str | None
    key: bytes | None
    duplicate_of: int | None
    replay_of: int | None


def _merge_notice(job: dict, event: NormalizedEvent, incoming: str | None, new: str | None) -> None:
    """Fold a notice's outputs, error and preprocess flag into the job's columns."""
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
    # A job first heard of in a notice started when the provider says, if it says.
    if event.started_at and job["origin"] == "external":
        job["started_at"] = min(event.started_at, job["started_at"] or event.started_at)


def _replay_key(event: NormalizedEvent, replay_of: int) -> bytes:
    """Return the dedup key of a replay: the replayed event and what it now parses to.

    Replaying an event again with the same parsers reads the same, so it is a duplicate of
    the first replay; after a parser fix it reads differently and is applied.
    """
    reading = (
        replay_of,
        event.event_type,
        event.kind,
        event.provider_job_id,
        event.media_id,
        event.state,
        event.occurred_at,
        event.error_code,
        event.error_message,
        event.preprocess,
        list(event.outputs),
    )
    text = json.dumps(reading, ensure_ascii=False, sort_keys=True, default=str)
    return b"replay:" + hashlib.blake2b(text.encode(), digest_size=16).digest()


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


# -- the rows every change of a job writes through ---------------------------------------


def lock_id(key: tuple) -> int:
    """Map a key to a signed 64-bit advisory lock id."""
    digest = hashlib.blake2b(repr(key).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def lock_keys(session: Session, keys: Iterable[tuple]) -> None:
    """Take transaction-scoped advisory locks, in a fixed (sorted) order (PostgreSQL)."""
    ids = sorted({lock_id(k) for k in keys})
    if ids:
        session.conn.execute(
            "SELECT " + ", ".join(["pg_advisory_xact_lock(?)"] * len(ids)), tuple(ids)
        )


def fetch_job(session: Session, where: str, params: tuple, *, lock: bool = False) -> dict | None:
    """Return one job's column values; with `lock`, hold its row until the commit."""
    sql = f"SELECT {JOB_COLUMNS} FROM jobs WHERE {where}"
    if lock:
        sql += session.backend.for_update
    row = session.conn.execute(sql, params).fetchone()
    return None if row is None else job_from_row(row)


def newest_for_media(
    session: Session,
    media_id: str,
    where: str,
    params: tuple,
    *,
    or_else: tuple[str, tuple] | None = None,
) -> dict | None:
    """Return the newest job of a media matching `where`, its row held until the commit.

    With `or_else` (a condition and its parameters), the newest job matching that one when
    none matches `where`. The media's jobs are found first, by `media_id` alone, which only
    jobs_media can serve (so no planner can choose to walk a kind's whole index instead);
    the conditions then pick among those few rows, and the one that chose is checked again
    on the locked row, which may have changed meanwhile.
    """
    newest = f"(SELECT MAX(id) FROM media WHERE {where})"
    check, check_params = where, params
    if or_else is not None:
        check, check_params = or_else
        newest = f"COALESCE({newest}, (SELECT MAX(id) FROM media WHERE {check}))"
        params = params + check_params
    row = session.conn.execute(
        "WITH media AS MATERIALIZED (SELECT id, provider, service, kind, state,"
        f" provider_job_id FROM jobs WHERE media_id = ?) SELECT {JOB_COLUMNS} FROM jobs"
        f" WHERE id = {newest} AND {check}{session.backend.for_update}",
        (media_id, *params, *check_params),
    ).fetchone()
    return None if row is None else job_from_row(row)


def settle(job: dict) -> None:
    """Derive the columns that follow from a job's state and times, before it is written.

    `settled_at`: when the ledger first had an outcome for it (a final state, or its
    deadline passing), by the ledger's clock (the change's `updated_at`), never moved
    after. `duration_seconds`: `finished_at` minus the start (see `job_start`), None
    without a finish, when the finish reads earlier than the start, or when an external
    job was first seen already finished (the ledger never saw it run).
    """
    if job["settled_at"] is None and job["state"] in states.SETTLED:
        job["settled_at"] = job["updated_at"]
    job["duration_seconds"] = duration_of(job)


def job_start(job: dict) -> str:
    """Return when a job started: its submission, or for a job first seen in a notice the
    provider's own start time when a notice carried one (else when it was first seen)."""
    if job["origin"] == "external" and job.get("started_at"):
        return job["started_at"]
    return job["submitted_at"]


def duration_of(job: dict) -> float | None:
    """Return a job's `finished_at` minus its start in seconds, or None (see `settle`)."""
    if not job["finished_at"]:
        return None
    try:
        end = datetime.fromisoformat(job["finished_at"].replace("Z", "+00:00"))
        start = datetime.fromisoformat(job_start(job).replace("Z", "+00:00"))
    except ValueError:
        return None
    seconds = (end - start).total_seconds()
    # First seen already finished, with no start time of the provider's: it was never seen
    # running, and 0 s would only drag the percentiles down.
    unseen = job["origin"] == "external" and not job.get("started_at") and seconds <= 0
    return None if seconds < 0 or unseen else round(seconds, 3)


def insert_job(session: Session, job: dict) -> None:
    """Write a new job's row."""
    settle(job)
    session.conn.execute(
        f"INSERT INTO jobs ({JOB_COLUMNS}) VALUES ({','.join('?' * len(JOB_FIELDS))})",
        tuple(job[c] for c in JOB_FIELDS),
    )


def update_job(session: Session, job: dict) -> None:
    """Write what a change may move of a job's row (its id and origin never change)."""
    settle(job)
    session.conn.execute(
        "UPDATE jobs SET state = ?, outputs = ?, error_code = ?, error_message = ?,"
        " preprocess = ?, finished_at = ?, last_event_at = ?, updated_at = ?,"
        " provider_job_id = ?, started_at = ?, settled_at = ?, duration_seconds = ?"
        " WHERE id = ?",
        (
            job["state"],
            job["outputs"],
            job["error_code"],
            job["error_message"],
            job["preprocess"],
            job["finished_at"],
            job["last_event_at"],
            job["updated_at"],
            job["provider_job_id"],
            job["started_at"],
            job["settled_at"],
            job["duration_seconds"],
            job["id"],
        ),
    )


def insert_local_event(
    session: Session, job: dict, event_type: str, body: str, now: str, source: str = "submit"
) -> None:
    """Record what jobledger itself did to a job (a submission, its answer, a deadline)."""
    session.conn.execute(
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


def count_notice(
    session: Session,
    source: str,
    event: NormalizedEvent | None,
    outcome: str,
    provider: str = "",
) -> None:
    """Count one notice by source, provider, type and outcome (for /metrics)."""
    session.conn.execute(
        "INSERT INTO notice_counts (source, provider, event_type, outcome, shard, n)"
        " VALUES (?, ?, ?, ?, ?, 1)"
        " ON CONFLICT (source, provider, event_type, outcome, shard)"
        " DO UPDATE SET n = notice_counts.n + 1",
        (
            source,
            event.provider if event else provider,
            (event.event_type or "")[:64] if event else "",
            outcome,
            _shard(session),
        ),
    )


def state_changed(session: Session, job: dict, old: str | None, new: str | None) -> None:
    """Keep `job_counts` in step with a state change, and queue its alert and its message,
    in the caller's transaction: the outbox rows commit or roll back with the change itself.

    `new` None is a job going away (folded into another by a merge): counted, no message.
    """
    if old == new:
        return
    if new is not None:
        queue_message(session, job, old, new)
    if new in states.ALERTING:
        session.conn.execute(
            "INSERT INTO alerts (job_id, state, created_at, error_code, error_message)"
            " VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
            (job["id"], new, utcnow(), job.get("error_code"), job.get("error_message")),
        )
    scope, shard = (job["provider"], job["service"], job["kind"]), _shard(session)
    # In state order, so two transactions never take the same two rows the other way.
    for state, delta in sorted(((old, -1), (new, 1)), key=lambda c: c[0] or ""):
        if state is not None:
            session.conn.execute(
                "INSERT INTO job_counts (provider, service, kind, state, shard, n)"
                " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (provider, service, kind, state,"
                " shard) DO UPDATE SET n = job_counts.n + excluded.n",
                (*scope, state, shard, delta),
            )


def queue_message(session: Session, job: dict, old: str | None, new: str) -> None:
    """Write the outbound message of one state change: one insert, its sequence counted
    from the job's earlier messages (its row is held, so changes of a job are serialized).

    The job record is kept as it is now; the `deliver` process fans the message out to
    the endpoints and builds each body from this row (store/deliveries.py).
    """
    session.conn.execute(
        "INSERT INTO messages (job_id, sequence, state, previous_state, created_at, data)"
        " VALUES (?, (SELECT COALESCE(MAX(sequence), 0) + 1 FROM messages WHERE job_id = ?),"
        " ?, ?, ?, ?)",
        (
            job["id"],
            job["id"],
            new,
            old,
            utcnow(),
            record_text(job, new),
        ),
    )


def record_text(job: dict, state: str) -> str:
    """Return the job record as JSON text, its outputs and metadata spliced in as stored.

    Decoding the outputs only to encode them again cost more than the rest of the message:
    the record is encoded with both empty, then each is put in place of its empty value
    (metadata first, as outputs may hold that text; a key in a string value has its quotes
    escaped, so only the record's own keys match). Outputs holding a NaN or an infinity,
    which JSON has no words for, are decoded and written with null in their place.
    """
    shell = public_job({**job, "state": state, "outputs": None, "metadata": None})
    text = json.dumps(shell, ensure_ascii=False, allow_nan=False)
    outputs = job["outputs"] or "[]"
    if "NaN" in outputs or "Infinity" in outputs:
        outputs = json.dumps(_finite(json.loads(outputs)), ensure_ascii=False)
    text = text.replace('"metadata": {}', '"metadata": ' + (job.get("metadata") or "{}"), 1)
    return text.replace('"outputs": []', '"outputs": ' + outputs, 1)


def _finite(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def _shard(session: Session) -> int:
    """Pick the counter row this transaction adds to (always 0 on SQLite)."""
    shards = session.backend.counter_shards
    return random.randrange(shards) if shards > 1 else 0
