"""The quarantine's read and status side, and the selection of what a bulk replay covers.

A quarantined body is `waiting` until it is replayed (parsed and recorded as an event) or
discarded by an operator; nothing here deletes a row. Bulk replays walk their selection
in id order (oldest first, the order the notices arrived) in bounded chunks, up to the
highest id that existed when the run began, so notices arriving meanwhile are not chased.

The SQL is standard (`?` placeholders, no engine-only syntax) except where noted:
`LENGTH(body)` counts the bytes of a BLOB in SQLite; PostgreSQL spells it
`OCTET_LENGTH(body)` for `bytea` (SQLite before 3.43 has no OCTET_LENGTH).
"""

import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta

from .connection import LedgerBase
from .ids import iso, utcnow
from .reads import MAX_LIMIT, BadQuery

WAITING, REPLAYED, DISCARDED = "waiting", "replayed", "discarded"
STATUSES = (WAITING, REPLAYED, DISCARDED)
# The sources whose bodies came from a provider, so today's parsers can read them again.
REPLAYABLE_SOURCES = ("http", "mns", "pull")
# Filter name -> accepted values (None: any value), per table.
QUARANTINE_FILTERS: dict[str, tuple[str, ...] | None] = {
    "provider": ("aliyun", "tencent"),
    "service": ("vod", "mps", "mns"),
    "source": REPLAYABLE_SOURCES,
    "status": STATUSES,
}
EVENT_FILTERS: dict[str, tuple[str, ...] | None] = {
    "provider": ("aliyun", "tencent"),
    "service": ("vod", "mps", "live"),
    "source": REPLAYABLE_SOURCES,
    "event_type": None,
}
TARGETS = ("quarantine", "events")

_ITEM_COLUMNS = (
    "q.id, q.received_at, q.provider, q.service, q.source, q.reason, q.verified, q.auth,"
    " q.status, LENGTH(q.body), q.replayed_at, q.replay_event_id, q.discarded_at,"
    " q.discarded_by, e.job_id, q.meta"
)
_ITEM_FIELDS = (
    "id",
    "received_at",
    "provider",
    "service",
    "source",
    "reason",
    "verified",
    "auth",
    "status",
    "size",
    "replayed_at",
    "replay_event_id",
    "discarded_at",
    "discarded_by",
    "job_id",
    "meta",
)
_FROM = "FROM quarantine q LEFT JOIN events e ON e.id = q.replay_event_id"


class QuarantineConflict(Exception):
    """The quarantined body is not in a status that allows the action (the message says why)."""


def _item(row: Sequence) -> dict:
    item = dict(zip(_ITEM_FIELDS, row, strict=True))
    item["verified"] = bool(item["verified"])
    try:
        item["meta"] = json.loads(item["meta"] or "{}")
    except ValueError:
        item["meta"] = {}
    return item


def _filter_sql(
    filters: Mapping[str, Iterable[str]] | None,
    allowed: Mapping[str, tuple[str, ...] | None],
    prefix: str,
) -> tuple[list[str], list]:
    """Turn {name: values} into SQL conditions; raise BadQuery naming a bad name or value."""
    where, params = [], []
    for name, values in (filters or {}).items():
        if name not in allowed:
            raise BadQuery(f"unknown filter {name!r}")
        values = [v for v in values if v]
        valid = allowed[name]
        for value in values:
            if valid is not None and value not in valid:
                raise BadQuery(f"{name} must be one of {', '.join(valid)}; got {value[:40]!r}")
        if values:
            where.append(f"{prefix}{name} IN ({','.join('?' * len(values))})")
            params += values
    return where, params


def _time_sql(
    since: datetime | None, until: datetime | None, column: str
) -> tuple[list[str], list]:
    where, params = [], []
    if since is not None:
        where.append(f"{column} >= ?")
        params.append(iso(since))
    if until is not None:
        # Stored times have milliseconds: "until 12:00:00.5" includes 12:00:00.500.
        where.append(f"{column} < ?")
        params.append(iso(until + timedelta(milliseconds=1)))
    return where, params


def decode_quarantine_cursor(cursor: str) -> int:
    """Read a quarantine page cursor (the last item's id); raise BadQuery if malformed."""
    if not (cursor.isascii() and cursor.isdigit() and len(cursor) <= 18):
        raise BadQuery("cursor is not one this server made")
    return int(cursor)


class QuarantineStore(LedgerBase):
    """The quarantine's queries and status changes, and bulk replay selections (a Ledger mixin)."""

    def list_quarantine(
        self,
        *,
        filters: Mapping[str, Iterable[str]] | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> tuple[list[dict], str | None]:
        """Return one page of quarantined bodies (without the bodies), newest first.

        :param filters: provider, service, source, status -> accepted values
        :param since: received at or after (aware datetime)
        :param until: received at or before (aware datetime)
        :param cursor: `next_cursor` of the previous page
        :raises BadQuery: an unknown filter or value, a bad limit or a foreign cursor
        """
        if not 1 <= limit <= MAX_LIMIT:
            raise BadQuery(f"limit must be between 1 and {MAX_LIMIT}")
        where, params = _filter_sql(filters, QUARANTINE_FILTERS, "q.")
        more_where, more_params = _time_sql(since, until, "q.received_at")
        where, params = where + more_where, params + more_params
        if cursor:
            where.append("q.id < ?")
            params.append(decode_quarantine_cursor(cursor))
        sql = f"SELECT {_ITEM_COLUMNS} {_FROM}"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY q.id DESC LIMIT ?"
        rows = self.conn.execute(sql, (*params, limit + 1)).fetchall()
        items = [_item(r) for r in rows[:limit]]
        next_cursor = str(items[-1]["id"]) if len(rows) > limit else None
        return items, next_cursor

    def get_quarantined(self, quarantine_id: int) -> dict | None:
        """Return one quarantined item with its body (bytes, or None once pruned), or None."""
        row = self.conn.execute(
            f"SELECT {_ITEM_COLUMNS}, q.body {_FROM} WHERE q.id = ?", (quarantine_id,)
        ).fetchone()
        if row is None:
            return None
        item = _item(row[:-1])
        body = row[-1]
        item["body"] = body.encode("utf-8", "surrogateescape") if isinstance(body, str) else body
        return item

    def discard_quarantined(self, quarantine_id: int, *, by: str) -> dict | None:
        """Mark a waiting body `discarded` (kept, never deleted); return the item, or None.

        Discarding a discarded body again changes nothing.

        :param by: who: the ops principal (`token`, `basic:<user>`, `loopback`, `cli`)
        :raises QuarantineConflict: the body was replayed already
        """
        changed = self._write(
            lambda: (
                self.conn.execute(
                    "UPDATE quarantine SET status = ?, discarded_at = ?, discarded_by = ?"
                    " WHERE id = ? AND status = ?",
                    (DISCARDED, utcnow(), by[:120], quarantine_id, WAITING),
                ).rowcount
            )
        )
        item = self.get_quarantined(quarantine_id)
        if item is not None and not changed and item["status"] == REPLAYED:
            raise QuarantineConflict(
                f"quarantined body {quarantine_id} was replayed already"
                f" (event {item['replay_event_id']}); it cannot be discarded"
            )
        return item

    def mark_quarantine_replayed(self, quarantine_id: int, event_id: int) -> bool:
        """Note that a waiting body was parsed and recorded as `event_id`.

        Return False if it was no longer waiting (another replay got there first).
        """
        changed = self._write(
            lambda: (
                self.conn.execute(
                    "UPDATE quarantine SET status = ?, replayed_at = ?, replay_event_id = ?"
                    " WHERE id = ? AND status = ?",
                    (REPLAYED, utcnow(), event_id, quarantine_id, WAITING),
                ).rowcount
            )
        )
        return bool(changed)

    # -- bulk replay selections -------------------------------------------------------------

    def _replay_where(
        self,
        target: str,
        filters: Mapping[str, Iterable[str]] | None,
        since: datetime | None,
        until: datetime | None,
        after: int,
        through: int | None,
    ) -> tuple[str, str, list]:
        """Return (table, WHERE clause, params) of a bulk replay's selection."""
        if target == "quarantine":
            where, params = _filter_sql(filters, QUARANTINE_FILTERS, "")
            where.append("status = ?")
            params.append(WAITING)
            table = "quarantine"
        elif target == "events":
            where, params = _filter_sql(filters, EVENT_FILTERS, "")
            # Originals only: a duplicate or an earlier replay carries the same body.
            where += [
                f"source IN ({','.join('?' * len(REPLAYABLE_SOURCES))})",
                "payload IS NOT NULL",
                "duplicate_of IS NULL",
                "replay_of IS NULL",
            ]
            params += REPLAYABLE_SOURCES
            table = "events"
        else:
            raise BadQuery(f"target must be one of {', '.join(TARGETS)}")
        more_where, more_params = _time_sql(since, until, "received_at")
        where, params = where + more_where + ["id > ?"], params + more_params + [after]
        if through is not None:
            where.append("id <= ?")
            params.append(through)
        return table, " AND ".join(where), params

    def replay_selection(
        self,
        target: str,
        *,
        filters: Mapping[str, Iterable[str]] | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        after: int = 0,
        through: int | None = None,
        limit: int | None = None,
    ) -> list[int]:
        """Return the ids a bulk replay covers, oldest first: waiting quarantined bodies, or
        stored provider notices (originals with a payload), matching the filters.

        A scan over `events` reads every row in the id range that the filters do not
        narrow by index; bulk replays are rare operator actions.

        :param target: `quarantine` or `events`
        :param filters: provider, service, source, and for events event_type
        :param after: only ids greater than this (where the previous chunk ended)
        :param through: only ids up to this (the highest id when the run began)
        :raises BadQuery: an unknown target, filter or value
        """
        table, where, params = self._replay_where(target, filters, since, until, after, through)
        sql = f"SELECT id FROM {table} WHERE {where} ORDER BY id"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
        return [row[0] for row in self.conn.execute(sql, params)]

    def count_replay_selection(
        self,
        target: str,
        *,
        filters: Mapping[str, Iterable[str]] | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        after: int = 0,
        through: int | None = None,
    ) -> int:
        """Count what `replay_selection` would return with the same arguments (no limit)."""
        table, where, params = self._replay_where(target, filters, since, until, after, through)
        sql = f"SELECT COUNT(*) FROM {table} WHERE {where}"
        return self.conn.execute(sql, params).fetchone()[0]

    def replay_bound(self, target: str) -> int:
        """Return the highest id of `quarantine` or `events` (0 when empty): a run's bound."""
        if target not in TARGETS:
            raise BadQuery(f"target must be one of {', '.join(TARGETS)}")
        table = "quarantine" if target == "quarantine" else "events"
        return self.conn.execute(f"SELECT MAX(id) FROM {table}").fetchone()[0] or 0
