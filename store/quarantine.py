"""The quarantine: authenticated bodies that could not be parsed, kept for a replay.

A quarantined body is `waiting` until it is replayed (parsed and recorded as an event) or
discarded by an operator; nothing here deletes a row. What a bulk replay covers is chosen
in store/replays.py.

The SQL is standard (`?` placeholders, no engine-only syntax) except where noted:
`LENGTH(body)` counts the bytes of a BLOB in SQLite; PostgreSQL spells it
`OCTET_LENGTH(body)` for `bytea` (SQLite before 3.43 has no OCTET_LENGTH).
"""

import functools
import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from .errors import BadQuery
from .ids import iso, utcnow
from .jobs import MAX_LIMIT
from .notices import count_notice
from .session import Part

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


def filter_sql(
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


def time_sql(since: datetime | None, until: datetime | None, column: str) -> tuple[list[str], list]:
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


class Quarantine(Part):
    """Keeping authenticated bodies that could not be parsed, and their status (the ledger's
    `quarantine` part)."""

    def keep(self, **item: Any) -> int:
        """Keep an authenticated body that could not be parsed, in a transaction of its own.

        Arguments as for `keep_in_transaction`; returns the quarantine id.
        """
        return self.write(functools.partial(self.keep_in_transaction, **item))

    def keep_in_transaction(
        self,
        *,
        provider: str,
        service: str,
        source: str,
        body: bytes | str,
        reason: str,
        verified: bool,
        auth: str | None = None,
        meta: dict | None = None,
    ) -> int:
        """Keep a body for `replay --quarantined` in the write transaction the caller has open.

        :param body: the bytes as received (text is stored as its UTF-8 bytes)
        :param meta: what else is worth keeping about the request (content type, sender)
        """
        if isinstance(body, str):
            body = body.encode("utf-8", "surrogateescape")
        count_notice(self.session, source, None, "quarantined", provider=provider)
        return self.conn.execute(
            "INSERT INTO quarantine (received_at, provider, service, source, reason, body,"
            " meta, verified, auth) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
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
        ).fetchone()[0]

    def find(self, *, provider: str, service: str, source: str, body: bytes | str) -> int | None:
        """Return the id of a quarantined copy of this exact body, if one is kept already.

        A poison message redelivered after its quarantine committed but before it was
        acknowledged (a crash in between) is then not kept twice.
        """
        if isinstance(body, str):
            body = body.encode("utf-8", "surrogateescape")
        row = self.conn.execute(
            "SELECT id FROM quarantine WHERE provider = ? AND service = ? AND source = ?"
            " AND body = ? ORDER BY id LIMIT 1",
            (provider, service, source, body),
        ).fetchone()
        return row and row[0]

    def bodies(self, ids: Iterable[int] | None = None, *, pending_only: bool = True) -> list[dict]:
        """Return quarantined bodies with their bytes, oldest first (only those still waiting
        for a replay, unless `pending_only` is False)."""
        sql = (
            "SELECT id, received_at, provider, service, source, reason, body, meta, verified,"
            " auth, replayed_at, replay_event_id FROM quarantine"
        )
        where, params = [], []
        ids = list(ids or [])
        if ids:
            where.append(f"id IN ({','.join('?' * len(ids))})")
            params += ids
        if pending_only:
            where.append("status = 'waiting'")
        if where:
            sql += " WHERE " + " AND ".join(where)
        fields = (
            "id",
            "received_at",
            "provider",
            "service",
            "source",
            "reason",
            "body",
            "meta",
            "verified",
            "auth",
            "replayed_at",
            "replay_event_id",
        )
        return [
            dict(zip(fields, row, strict=True))
            for row in self.conn.execute(sql + " ORDER BY id", params)
        ]

    def waiting(self) -> int:
        """Return how many quarantined bodies are waiting for a replay."""
        return self.conn.execute(
            "SELECT COUNT(*) FROM quarantine WHERE status = 'waiting'"
        ).fetchone()[0]

    def search(
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
        where, params = filter_sql(filters, QUARANTINE_FILTERS, "q.")
        more_where, more_params = time_sql(since, until, "q.received_at")
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

    def get(self, quarantine_id: int) -> dict | None:
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

    def discard(self, quarantine_id: int, *, by: str) -> dict | None:
        """Mark a waiting body `discarded` (kept, never deleted); return the item, or None.

        Discarding a discarded body again changes nothing.

        :param by: who: the ops principal (`token`, `basic:<user>`, `loopback`, `cli`)
        :raises QuarantineConflict: the body was replayed already
        """
        changed = self.write(
            lambda: (
                self.conn.execute(
                    "UPDATE quarantine SET status = ?, discarded_at = ?, discarded_by = ?"
                    " WHERE id = ? AND status = ?",
                    (DISCARDED, utcnow(), by[:120], quarantine_id, WAITING),
                ).rowcount
            )
        )
        item = self.get(quarantine_id)
        if item is not None and not changed and item["status"] == REPLAYED:
            raise QuarantineConflict(
                f"quarantined body {quarantine_id} was replayed already"
                f" (event {item['replay_event_id']}); it cannot be discarded"
            )
        return item

    def mark_replayed(self, quarantine_id: int, event_id: int) -> bool:
        """Note that a waiting body was parsed and recorded as `event_id`.

        Return False if it was no longer waiting (another replay got there first).
        """
        changed = self.write(
            lambda: (
                self.conn.execute(
                    "UPDATE quarantine SET status = ?, replayed_at = ?, replay_event_id = ?"
                    " WHERE id = ? AND status = ?",
                    (REPLAYED, utcnow(), event_id, quarantine_id, WAITING),
                ).rowcount
            )
        )
        return bool(changed)
