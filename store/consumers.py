"""Ledger reads the queue consumers (`consume-mns`, `pull-tencent`) need before writing.

Batches are recorded by `Ledger.record_events`, in one transaction each.
"""

from pathlib import Path

from .ledger import Ledger, open_ledger
from .migrations import migrations


def find_quarantined(
    ledger: Ledger, *, provider: str, service: str, source: str, body: bytes | str
) -> int | None:
    """Return the id of a quarantined copy of this exact body, if one is kept already.

    A poison message redelivered after its quarantine committed but before it was deleted
    (a crash in between) is then not kept twice. The quarantine is small; no index needed.
    """
    if isinstance(body, str):
        body = body.encode("utf-8", "surrogateescape")
    row = ledger.conn.execute(
        "SELECT id FROM quarantine WHERE provider = ? AND service = ? AND source = ? AND body = ?"
        " ORDER BY id LIMIT 1",
        (provider, service, source, body),
    ).fetchone()
    return row and row[0]


def ledger_problem(path: str | Path) -> str | None:
    """Return why a consumer cannot use the ledger at `path` yet, or None if it can.

    A long-running consumer must not open a missing file (SQLite would create an empty
    one) nor one with pending migrations: every batch would fail, look transient, and be
    retried forever.
    """
    if not Path(path).is_file():
        return f"no ledger at {path}: run `flask --app wsgi init-db`"
    with open_ledger(path) as ledger:
        pending = [m.name for m in migrations.pending(ledger.db)]
    if pending:
        return f"ledger at {path} needs {', '.join(pending)}: run `flask --app wsgi init-db`"
    return None
