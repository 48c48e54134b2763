"""The simplest durable receiver: the second baseline of bench/ingest.py.

Verify the VOD signature, parse the JSON, INSERT the raw body under a unique content hash
into SQLite in WAL mode, commit per request, answer 200 (a redelivery is ignored, still
200). No jobs, no state machine, no metrics: what any correct receiver must at least do.
`RECEIVER_DURABILITY=full` makes it fsync every commit, as jobledger's `full` does.
With `BENCH_DURABLE_DB` a postgresql:// URL it writes to PostgreSQL instead (psycopg 3, a
connection per thread, each INSERT its own transaction: durable as the server's
`synchronous_commit` says).
Served by the same gunicorn.conf.py as jobledger: `gunicorn -c gunicorn.conf.py
bench.durable_app:app`, with `BENCH_DURABLE_DB` naming its database file.
"""

import hashlib
import hmac
import json
import os
import sqlite3
import threading
import time

from flask import Flask, jsonify, request

app = Flask(__name__)
_local = threading.local()
URL = os.environ.get("RECEIVER_ALIYUN_VOD_CALLBACK_URL", "")
KEYS = [k for k in os.environ.get("RECEIVER_ALIYUN_VOD_AUTH_KEYS", "").split(",") if k]
SYNC = "FULL" if os.environ.get("RECEIVER_DURABILITY") == "full" else "NORMAL"


DB = os.environ.get("BENCH_DURABLE_DB", "")
POSTGRES = DB.startswith(("postgresql://", "postgres://"))
INSERT = (
    "INSERT INTO notices VALUES (%s, %s) ON CONFLICT DO NOTHING"
    if POSTGRES
    else "INSERT OR IGNORE INTO notices VALUES (?, ?)"
)


def _conn():
    conn = getattr(_local, "conn", None)
    if conn is None or getattr(_local, "pid", None) != os.getpid():
        if POSTGRES:
            import psycopg

            conn = psycopg.connect(DB, autocommit=True)
            conn.execute("CREATE TABLE IF NOT EXISTS notices (hash bytea UNIQUE, body text)")
        else:
            conn = sqlite3.connect(DB, timeout=5, isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(f"PRAGMA synchronous={SYNC}")
            conn.execute("CREATE TABLE IF NOT EXISTS notices (hash BLOB UNIQUE, body TEXT)")
        _local.conn, _local.pid = conn, os.getpid()
    return conn


@app.post("/hooks/aliyun/vod")
def receive():
    """Verify, parse, insert, commit, acknowledge."""
    stamp = request.headers.get("X-VOD-TIMESTAMP", "")
    given = request.headers.get("X-VOD-SIGNATURE", "").encode()
    if not (stamp.isascii() and stamp.isdigit()) or abs(time.time() - int(stamp)) > 300:
        return jsonify(ok=False), 401
    expected = [hashlib.md5(f"{URL}|{stamp}|{k}".encode()).hexdigest().encode() for k in KEYS]
    if not any(hmac.compare_digest(e, given) for e in expected):
        return jsonify(ok=False), 401
    body = request.get_data(cache=False)
    doc = json.loads(body)
    digest = hashlib.sha256(body).digest()[:16]
    _conn().execute(INSERT, (digest, body.decode()))
    return jsonify(ok=True, event_type=doc.get("EventType")), 200


@app.get("/healthz")
def healthz():
    """Say the process is up."""
    return jsonify(ok=True)
