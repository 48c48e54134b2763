"""The quarantine's intake: keeping an authenticated body that could not be parsed, and
finding it again (the status side and bulk replays are in store/quarantine.py)."""

import json
from collections.abc import Iterable

from .ids import utcnow
from .reads import LedgerReads
from .rows import JobRows


class QuarantineIntake(JobRows, LedgerReads):
    """Ledger methods that keep unparseable bodies."""

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
        meta: dict | None = None,
    ) -> int:
        """Keep an authenticated body that could not be parsed, for `replay --quarantined`."""
        if isinstance(body, str):
            body = body.encode("utf-8", "surrogateescape")
        row = (
            utcnow(),
            provider,
            service,
            source,
            reason,
            body,
            json.dumps(dict(meta or {}), ensure_ascii=False),
            int(verified),
            auth,
        )

        def write() -> int:
            self._count_notice(source, None, "quarantined", provider=provider)
            return self.conn.execute(
                "INSERT INTO quarantine (received_at, provider, service, source, reason, body,"
                " meta, verified, auth) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
                row,
            ).fetchone()[0]

        return self._write(write)

    def find_quarantined(
        self, *, provider: str, service: str, source: str, body: bytes | str
    ) -> int | None:
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

    def quarantined(
        self, ids: Iterable[int] | None = None, *, pending_only: bool = True
    ) -> list[dict]:
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
