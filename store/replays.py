"""What a bulk replay covers: waiting quarantined bodies, or stored provider notices.

A run walks its selection in id order (oldest first, the order the notices arrived) in
bounded chunks, up to the highest id that existed when it began (`bound`), so notices
arriving meanwhile are not chased.
"""

from collections.abc import Iterable, Mapping
from datetime import datetime

from .errors import BadQuery
from .quarantine import (
    EVENT_FILTERS,
    QUARANTINE_FILTERS,
    REPLAYABLE_SOURCES,
    TARGETS,
    WAITING,
    filter_sql,
    time_sql,
)
from .session import Part


class Replays(Part):
    """Selections of bulk replays (the ledger's `replays` part)."""

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
            where, params = filter_sql(filters, QUARANTINE_FILTERS, "")
            where.append("status = ?")
            params.append(WAITING)
            table = "quarantine"
        elif target == "events":
            where, params = filter_sql(filters, EVENT_FILTERS, "")
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
        more_where, more_params = time_sql(since, until, "received_at")
        where, params = where + more_where + ["id > ?"], params + more_params + [after]
        if through is not None:
            where.append("id <= ?")
            params.append(through)
        return table, " AND ".join(where), params

    def select(
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

    def count(
        self,
        target: str,
        *,
        filters: Mapping[str, Iterable[str]] | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        after: int = 0,
        through: int | None = None,
    ) -> int:
        """Count what `select` would return with the same arguments (no limit)."""
        table, where, params = self._replay_where(target, filters, since, until, after, through)
        sql = f"SELECT COUNT(*) FROM {table} WHERE {where}"
        return self.conn.execute(sql, params).fetchone()[0]

    def bound(self, target: str) -> int:
        """Return the highest id of `quarantine` or `events` (0 when empty): a run's bound."""
        if target not in TARGETS:
            raise BadQuery(f"target must be one of {', '.join(TARGETS)}")
        table = "quarantine" if target == "quarantine" else "events"
        return self.conn.execute(f"SELECT MAX(id) FROM {table}").fetchone()[0] or 0
