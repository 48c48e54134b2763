"""Where a callback's CPU goes: each stage of the hot path timed in-process, without gunicorn.

    .venv/bin/python -m bench.stages            # 3,000 distinct notices per measurement

Times, per notice: the whole WSGI call of jobledger and of the bare app (bench/bare_app.py)
with a prebuilt environ (so no socket, no gunicorn, no access log), and the stages of
jobledger's view on their own: signature check, parse (JSON decode + dedup key), the ledger
transaction (normal and full durability; broken down into BEGIN, statements, COMMIT), the
outbound message written with each state change (the job record as JSON, and its INSERT),
the JSON log line and the JSON answer. Single thread, so no lock waits: this is pure cost.
"""

import argparse
import io
import json
import logging
import sys
import tempfile
import time
from pathlib import Path

from bench.common import AUTH_KEY, CALLBACK_URL, TEMPLATE, vod_headers


def body_for(i: int, prefix: str) -> bytes:
    return json.dumps(
        dict(TEMPLATE, VideoId=f"{prefix}-{i}", EventTime="2026-11-21T00:00:00Z")
    ).encode()


def environ_for(body: bytes) -> dict:
    headers = vod_headers()
    return {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": "/hooks/aliyun/vod",
        "QUERY_STRING": "",
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8000",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "CONTENT_TYPE": "application/json",
        "CONTENT_LENGTH": str(len(body)),
        "HTTP_X_VOD_TIMESTAMP": headers["X-VOD-TIMESTAMP"],
        "HTTP_X_VOD_SIGNATURE": headers["X-VOD-SIGNATURE"],
        "wsgi.input": io.BytesIO(body),
        "wsgi.url_scheme": "http",
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
        "wsgi.version": (1, 0),
    }


def per_call_us(fn, items) -> tuple[float, float]:
    """Return (wall, CPU) microseconds per call."""
    started, cpu = time.perf_counter(), time.process_time()
    for item in items:
        fn(item)
    wall = (time.perf_counter() - started) / len(items) * 1e6
    return wall, (time.process_time() - cpu) / len(items) * 1e6


def wsgi_call(app):
    statuses = []

    def start_response(status, headers, exc_info=None):
        statuses.append(status)

    def call(body):
        for _ in app(environ_for(body), start_response):
            pass

    return call, statuses


def outbox_costs(ledger, durability: str) -> dict:
    """The outbox's share of a notice: the job record as JSON, and the message INSERT (its
    sequence counted in the same statement), each timed inside an open transaction."""
    from store.notices import queue_message, record_text
    from store.records import JOB_COLUMNS, job_from_row

    jobs = [job_from_row(r) for r in ledger.conn.execute(f"SELECT {JOB_COLUMNS} FROM jobs")]
    out = {}
    out[f"outbox: job record as JSON ({durability})"] = per_call_us(
        lambda j: record_text(j, "succeeded"), jobs
    )
    timed = {}

    def insert_all() -> None:
        timed["us"] = per_call_us(
            lambda j: queue_message(ledger.session, j, "processing", "succeeded"), jobs
        )
        raise _Rollback  # leave the ledger as it was

    try:
        ledger.session.write(insert_all)
    except _Rollback:
        pass
    out[f"outbox: queue_message, JSON + INSERT, in a transaction ({durability})"] = timed["us"]
    return out


class _Rollback(Exception):
    pass


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", type=int, default=3000)
    args = parser.parse_args(argv)
    n = args.n
    with tempfile.TemporaryDirectory() as tmp:
        from receiver import create_app
        from receiver.db import close_ledgers
        from receiver.providers.aliyun import vod as aliyun_vod
        from store import migrate, open_ledger

        results = {}
        for durability in ("normal", "full"):
            db = Path(tmp) / f"{durability}.db"
            migrate(db)
            app = create_app(
                {
                    "DATABASE": str(db),
                    "ALIYUN_VOD_CALLBACK_URL": CALLBACK_URL,
                    "ALIYUN_VOD_AUTH_KEYS": [AUTH_KEY],
                    "DURABILITY": durability,
                }
            )
            # The app logs to stderr; measure the cost of formatting and writing the line
            # into a memory stream instead of the terminal.
            for handler in logging.getLogger("jobledger").handlers:
                if isinstance(handler, logging.StreamHandler):
                    handler.setStream(io.StringIO())
            call, statuses = wsgi_call(app)
            per_call_us(call, [body_for(i, f"warm-{durability}") for i in range(200)])
            results[f"jobledger WSGI call ({durability})"] = per_call_us(
                call, [body_for(i, f"wsgi-{durability}") for i in range(n)]
            )
            assert set(statuses) == {"200 OK"}, set(statuses)
            close_ledgers()

            with open_ledger(db, durability) as ledger:
                events = [aliyun_vod.parse(body_for(i, f"ledger-{durability}")) for i in range(n)]
                results[f"Ledger.notices.record ({durability})"] = per_call_us(
                    lambda e, led=ledger: led.notices.record(
                        e, source="http", verified=True, auth="signature"
                    ),
                    events,
                )
                results.update(outbox_costs(ledger, durability))
                conn = ledger.conn
                conn.execute("CREATE TABLE IF NOT EXISTS bench_commit (x)")
                conn.commit()

                def empty_txn(_, conn=conn):
                    conn.execute("BEGIN IMMEDIATE")
                    conn.execute("INSERT INTO bench_commit VALUES (1)")
                    conn.execute("COMMIT")

                results[f"BEGIN IMMEDIATE + 1 tiny INSERT + COMMIT ({durability})"] = per_call_us(
                    empty_txn, range(n)
                )
        from bench.bare_app import app as bare

        call, statuses = wsgi_call(bare)
        per_call_us(call, [body_for(i, "warm-bare") for i in range(200)])
        results["bare app WSGI call"] = per_call_us(call, [body_for(i, "bare") for i in range(n)])
        bodies = [body_for(i, "parse") for i in range(n)]
        headers = vod_headers()
        secret = (CALLBACK_URL, [AUTH_KEY, "OtherKey"])
        results["aliyun_vod.verify (2 keys)"] = per_call_us(
            lambda b: aliyun_vod.verify(b, headers, secret), bodies
        )
        results["aliyun_vod.parse (JSON + dedup key)"] = per_call_us(aliyun_vod.parse, bodies)
        results["json.loads of the body"] = per_call_us(json.loads, bodies)
        from receiver.providers.base import dedup_key

        docs = [json.loads(b) for b in bodies]
        results["dedup_key (sorted re-dump + sha256)"] = per_call_us(
            lambda d: dedup_key("aliyun_vod", d), docs
        )
        from receiver.logs import JSONFormatter

        logger = logging.getLogger("bench.stages")
        stream = io.StringIO()
        handler = logging.StreamHandler(stream)
        handler.setFormatter(JSONFormatter())
        logger.addHandler(handler)
        logger.propagate = False
        logger.setLevel(logging.INFO)
        extra = {"event_id": 1, "job_id": "01J0000000000000000000000", "state": "succeeded"}
        results["one JSON log line (hooks.*.applied)"] = per_call_us(
            lambda _: logger.info("hooks.aliyun_vod.applied", extra=extra), range(n)
        )
        with create_app({"DATABASE": str(Path(tmp) / "x.db")}).app_context():
            from flask import jsonify

            results["jsonify of the 200 answer"] = per_call_us(
                lambda _: jsonify(ok=True, event_id=1, job_id="x" * 26, state="s", duplicate=False),
                range(n),
            )
    print("| stage (per notice, one thread, no contention) | wall µs | CPU µs |")
    print("| --- | ---: | ---: |")
    for name, (wall, cpu) in results.items():
        print(f"| {name} | {wall:,.0f} | {cpu:,.0f} |")
    return 0


class TimedConnection:
    """A sqlite3 connection proxy that adds up the time of each statement, by its SQL."""

    def __init__(self, conn, totals):
        self._conn, self._totals = conn, totals

    def execute(self, sql, params=()):
        started = time.perf_counter()
        cursor = self._conn.execute(sql, params)
        key = " ".join(sql.split()[:4])[:60]
        self._totals[key] = self._totals.get(key, 0.0) + time.perf_counter() - started
        return cursor

    def __getattr__(self, name):
        return getattr(self._conn, name)


def ledger_size_cost(path: Path, n: int, durability: str = "normal") -> dict:
    """Recording a notice on an existing (large) ledger: µs per notice, WAL pages per commit,
    and time per statement. The rows added are deleted afterwards."""
    import sqlite3

    from receiver.providers.aliyun import vod as aliyun_vod
    from store import open_ledger

    conn = sqlite3.connect(path)
    max_event = conn.execute("SELECT COALESCE(MAX(id), 0) FROM events").fetchone()[0]
    max_job = conn.execute("SELECT COALESCE(MAX(id), '') FROM jobs").fetchone()[0]
    counts = conn.execute(
        "SELECT provider, service, kind, state, shard, n FROM job_counts"
    ).fetchall()
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    totals: dict[str, float] = {}
    with open_ledger(path, durability) as ledger:
        ledger.conn.execute("PRAGMA wal_autocheckpoint=0")  # count the WAL frames written
        ledger.conn = TimedConnection(ledger.conn, totals)
        events = [aliyun_vod.parse(body_for(i, f"size-{time.time_ns()}")) for i in range(n)]
        wall, cpu = per_call_us(
            lambda e: ledger.notices.record(e, source="http", verified=True, auth="signature"),
            events,
        )
        wal = Path(str(path) + "-wal")  # measured before closing: the last close removes it
        frames = (wal.stat().st_size - 32) / (4096 + 24) if wal.exists() else 0
    conn = sqlite3.connect(path)
    with conn:
        conn.execute("DELETE FROM events WHERE id > ?", (max_event,))
        conn.execute("DELETE FROM jobs WHERE id > ?", (max_job,))
        conn.execute("DELETE FROM job_counts")
        conn.executemany(
            "INSERT INTO job_counts (provider, service, kind, state, shard, n)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            counts,
        )
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    return {
        "wall_us": wall,
        "cpu_us": cpu,
        "wal_pages_per_commit": frames / n,
        "statement_us": {k: v / n * 1e6 for k, v in sorted(totals.items(), key=lambda kv: -kv[1])},
    }


def not_a_ledger(path: Path) -> str | None:
    """Say why `path` is no ledger to measure (None when it is one); never create it."""
    import sqlite3

    if not path.is_file():
        return "no such file" if not path.exists() else "not a file"
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
        finally:
            conn.close()
    except sqlite3.Error as e:
        return f"not an SQLite file ({e})"
    return None if {"events", "jobs", "job_counts"} <= tables else "not a jobledger ledger"


def size_main(argv=None) -> int:
    """`python -m bench.stages --ledger bench/out/ledger-1000000.db`: cost of a notice by size."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--ledger", type=Path, action="append", required=True)
    parser.add_argument("-n", type=int, default=3000)
    args = parser.parse_args(argv)
    for path in args.ledger:
        problem = not_a_ledger(path)
        if problem:
            parser.error(f"--ledger {path}: {problem}")
    from store import migrate

    with tempfile.TemporaryDirectory() as tmp:
        empty = Path(tmp) / "empty.db"
        migrate(empty)
        for path in [empty, *args.ledger]:
            label = "empty" if path == empty else path.name
            res = ledger_size_cost(path, args.n)
            print(
                f"{label}: {res['wall_us']:.0f} µs wall, {res['cpu_us']:.0f} µs CPU per notice, "
                f"{res['wal_pages_per_commit']:.1f} WAL pages per commit"
            )
            for sql, us in res["statement_us"].items():
                print(f"    {us:7.1f} µs  {sql}")
    return 0


if __name__ == "__main__":
    sys.exit(size_main() if "--ledger" in sys.argv else main())
