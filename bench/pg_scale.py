"""The PostgreSQL side of bench/scale.py: the ledger's sample, plans, size and restore.

Each function answers what its namesake in bench/scale.py answers for an SQLite file, read
from the PostgreSQL database at `url`, so the report is the same table for both engines.
"""

import random
import time
from datetime import datetime, timedelta
from urllib.parse import urlsplit, urlunsplit

import psycopg

from store import open_ledger

# Plan nodes worth a look in a list query: a whole-table read or a sort of many rows.
SUSPECT = ("Seq Scan", "Sort  (", "Bitmap Heap Scan")


def server_version(url: str) -> str:
    with psycopg.connect(url) as pg:
        return pg.execute("SHOW server_version").fetchone()[0].split()[0]


def job_count(url: str) -> int:
    """How many jobs the database holds (0 before its first migration)."""
    with psycopg.connect(url) as pg:
        if pg.execute("SELECT to_regclass('jobs')").fetchone()[0] is None:
            return 0
        return pg.execute("SELECT COUNT(*) FROM jobs").fetchone()[0]


def sample_rows(url: str, n: int, seed: int = 7) -> list[dict]:
    """Random jobs of the ledger: a repeatable Bernoulli sample of the jobs table."""
    with psycopg.connect(url) as pg:
        total = pg.execute("SELECT COUNT(*) FROM jobs").fetchone()[0]
        if not total:
            return []
        percent = min(100.0, 100.0 * n * 1.5 / total)
        found = pg.execute(
            "SELECT id, provider_job_id, media_id, submitted_at FROM jobs"
            " TABLESAMPLE BERNOULLI (%s) REPEATABLE (%s)",
            (percent, seed),
        ).fetchall()
    rng = random.Random(seed)
    rng.shuffle(found)
    return [dict(zip(("id", "pjid", "media", "at"), r, strict=True)) for r in found[:n]]


def _explain(ledger, sql: str, params) -> list[str]:
    rows = ledger.conn.execute("EXPLAIN (ANALYZE, BUFFERS) " + sql, params).fetchall()
    return [r[0] for r in rows]


def query_plans(url: str, rows: list[dict]) -> list[dict]:
    """EXPLAIN (ANALYZE, BUFFERS) of the SQL that jobs.search runs for each filter."""
    from bench.scale import plan_cases  # one list of cases for both engines

    out = []
    with open_ledger(url) as ledger:
        for name, kwargs in plan_cases(rows).items():
            seen = []
            execute = ledger.conn.execute

            def recording(sql, params=(), _seen=seen, _execute=execute):
                _seen.append((sql, params))
                return _execute(sql, params)

            ledger.conn.execute = recording
            started = time.perf_counter()
            try:
                ledger.jobs.search(**kwargs)
            finally:
                del ledger.conn.execute
            ms = (time.perf_counter() - started) * 1000
            sql, params = next(s for s in seen if s[0].lstrip().upper().startswith("SELECT"))
            plan = _explain(ledger, sql, params)
            flags = [p.strip() for p in plan if any(s in p for s in SUSPECT)]
            out.append({"case": name, "sql": sql, "plan": plan, "flags": flags, "ms": ms})
        job = rows[0]["id"]
        for name, sql, params in (
            ("job detail events", "SELECT * FROM events WHERE job_id = ? ORDER BY id", (job,)),
            ("stats", "SELECT provider, service, kind, state, n FROM job_counts WHERE n != 0", ()),
        ):
            plan = _explain(ledger, sql, params)
            out.append({"case": name, "sql": sql, "plan": plan, "flags": [], "ms": None})
    return out


def db_size(url: str) -> dict:
    """Bytes of the database, and of each table (heap and TOAST) and index of the ledger."""
    with psycopg.connect(url) as pg:
        one = lambda sql: pg.execute(sql).fetchone()[0]  # noqa: E731
        by_object = dict(
            pg.execute(
                "SELECT c.relname, pg_table_size(c.oid) FROM pg_class c"
                " WHERE c.relnamespace = current_schema()::regnamespace"
                " AND c.relkind IN ('r', 'i')"
            ).fetchall()
        )
        events = one("SELECT COUNT(*) FROM events")
        jobs = one("SELECT COUNT(*) FROM jobs")
        used = one("SELECT pg_database_size(current_database())")
        payload = one("SELECT SUM(octet_length(payload)) FROM events")
    return {
        "jobs": jobs,
        "events": events,
        "bytes": used,
        "file_bytes": used,
        "payload_bytes": payload,
        "bytes_per_million_events": used / events * 1e6 if events else None,
        "by_object": by_object,
    }


def sibling(url: str, name: str) -> str:
    """The URL of database `name` on the same server."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + name))


def create_empty(url: str, name: str) -> str:
    """Create (again) an empty database next to `url`'s; return its URL."""
    with psycopg.connect(url, autocommit=True) as pg:
        pg.execute(f'DROP DATABASE IF EXISTS "{name}"')
        pg.execute(f'CREATE DATABASE "{name}"')
    return sibling(url, name)


def drop_database(url: str, name: str) -> None:
    with psycopg.connect(url, autocommit=True) as pg:
        pg.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def snapshot(url: str) -> dict:
    """What restore() needs to put the ledger back as generated."""
    with psycopg.connect(url) as pg:
        return {
            "max_event": pg.execute("SELECT MAX(id) FROM events").fetchone()[0],
            "max_job": pg.execute("SELECT MAX(id) FROM jobs").fetchone()[0],
            "counts": pg.execute(
                "SELECT provider, service, kind, state, n FROM job_counts"
            ).fetchall(),
        }


def restore(url: str, snap: dict) -> None:
    """Remove what the ingest added; vacuum as autovacuum would after so many deletes."""
    with psycopg.connect(url, autocommit=True) as pg:
        with pg.transaction():
            pg.execute("DELETE FROM events WHERE id > %s", (snap["max_event"],))
            pg.execute("DELETE FROM jobs WHERE id > %s", (snap["max_job"],))
            pg.execute("DELETE FROM job_counts")
            pg.cursor().executemany(
                "INSERT INTO job_counts (provider, service, kind, state, n)"
                " VALUES (%s, %s, %s, %s, %s)",
                snap["counts"],
            )
        pg.execute("VACUUM (ANALYZE) events, jobs, job_counts")


def retention_pass(url: str) -> dict:
    """One retention pass that prunes the ledger's first day of payloads, as a daily pass does."""
    with psycopg.connect(url) as pg:
        first = pg.execute("SELECT MIN(received_at) FROM events").fetchone()[0]
    cutoff = datetime.fromisoformat(first.replace("Z", "+00:00")) + timedelta(days=1)
    with open_ledger(url) as ledger:
        started = time.perf_counter()
        pruned = ledger.retention.prune(cutoff)
        seconds = time.perf_counter() - started
    return {"cutoff": cutoff.isoformat(), "pruned": pruned, "seconds": round(seconds, 2)}
