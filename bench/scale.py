"""Scale benchmark: the API, pages and ingest on a ledger of 1,000,000 jobs / 5,000,000 events.

    .venv/bin/python -m bench.scale                          # 1M jobs (generated if missing)
    .venv/bin/python -m bench.scale --jobs 100000
    .venv/bin/python -m bench.scale --curve 10000,100000,1000000   # the cost curve
    .venv/bin/python -m bench.scale --engine postgresql      # the same on PostgreSQL

For each size: build the ledger with bench/generate.py (kept in bench/out/ledger-<N>.db and
reused), start gunicorn with the project's gunicorn.conf.py on it, then:

- latency (p50/p95/max) of a few hundred sequential keep-alive requests per endpoint:
  /api/jobs with each single filter, q by ledger id / provider job id / media id, since/until,
  deep cursors, /api/jobs/<id>, /api/stats, and the HTML pages (/, /jobs, /jobs/<id>)
  when they exist (404: skipped with a note);
- EXPLAIN QUERY PLAN of every /api/jobs query, flagging full scans and temp B-trees;
- ingest (bench/ingest.py's wrk script, 32 connections) on that ledger against a freshly
  migrated empty one, alternating; the rows added are removed afterwards so the ledger stays
  as generated;
- VmRSS / VmHWM of every gunicorn worker; database size per million events (dbstat).

With `--engine postgresql` the ledger is loaded into a throwaway PostgreSQL cluster
(bench/pg_ingest.py's DurableCluster, kept under bench/out/ while it runs) or into the
database of `--database postgresql://...`, by bench/pg_load.py, and the service runs on it:
the sample, the plans (EXPLAIN (ANALYZE, BUFFERS)) and the sizes come from PostgreSQL
(bench/pg_scale.py), the empty ledger of the ingest comparison is a second database on the
same server, and one retention pass is timed at the end.

Needs wrk (see bench/ingest.py). Output: markdown tables on stdout, raw figures in
bench/out/scale-*.json.
"""

import argparse
import http.client
import json
import random
import sqlite3
import sys
import tempfile
import time
import urllib.parse
from datetime import datetime, timedelta
from pathlib import Path

from bench import pg_scale
from bench.common import (
    OPS_TOKEN,
    OUT,
    Server,
    ensure_wrk,
    ledger_env,
    machine,
    median,
    run_wrk,
    write_lua,
)
from bench.generate import default_path, generate
from bench.pg_ingest import DurableCluster
from bench.pg_load import load
from store import is_url, migrate, open_ledger
from store.backend import redact
from store.jobs import encode_cursor

TARGETS = {"list": 50, "detail": 20, "stats": 50}
EMPTY_PG = "ledger_scale_empty"  # the empty ledger of the ingest comparison, on PostgreSQL


def percentile(values: list[float], p: float) -> float:
    values = sorted(values)
    if not values:
        return float("nan")
    k = min(len(values) - 1, max(0, round(p / 100 * (len(values) - 1))))
    return values[k]


class Client:
    """Sequential keep-alive requests to one server."""

    def __init__(self, port: int):
        self.port = port
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)

    def get(self, path: str) -> tuple[int, bytes, float]:
        headers = {"Authorization": f"Bearer {OPS_TOKEN}"}
        for attempt in (1, 2):
            try:
                started = time.perf_counter()
                self.conn.request("GET", path, headers=headers)
                response = self.conn.getresponse()
                body = response.read()
                return response.status, body, (time.perf_counter() - started) * 1000
            except (http.client.HTTPException, ConnectionError):
                # gunicorn closes a keep-alive connection now and then (worker recycling)
                self.conn.close()
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")


def sample_rows(db: Path, n: int, seed: int = 7) -> list[dict]:
    """Random jobs of the ledger (rowids of the generated table are dense)."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        top = conn.execute("SELECT MAX(rowid) FROM jobs").fetchone()[0] or 0
        rng = random.Random(seed)
        rows = []
        while len(rows) < n and top:
            row = conn.execute(
                "SELECT id, provider_job_id, media_id, submitted_at FROM jobs WHERE rowid = ?",
                (rng.randint(1, top),),
            ).fetchone()
            if row:
                rows.append(dict(zip(("id", "pjid", "media", "at"), row, strict=True)))
        return rows
    finally:
        conn.close()


def endpoints(rows: list[dict], n: int, seed: int = 8) -> dict[str, list[str]]:
    """Paths to request per measured endpoint, `n` each, drawn from the ledger's own ids."""
    rng = random.Random(seed)
    pick = lambda: rng.choice(rows)  # noqa: E731
    with_pjid = [r for r in rows if r["pjid"]] or rows
    times = sorted(r["at"] for r in rows)

    def window(hours: float) -> tuple[str, str]:
        start = datetime.fromisoformat(rng.choice(times).replace("Z", "+00:00"))
        return start.isoformat(), (start + timedelta(hours=hours)).isoformat()

    q = urllib.parse.quote
    out = {
        "/api/jobs (no filter)": ["/api/jobs"] * n,
        "/api/jobs?state=succeeded": ["/api/jobs?state=succeeded"] * n,
        "/api/jobs?state=failed": ["/api/jobs?state=failed"] * n,
        "/api/jobs?state=processing": ["/api/jobs?state=processing"] * n,
        "/api/jobs?state=timed_out": ["/api/jobs?state=timed_out"] * n,
        "/api/jobs?state=submit_failed": ["/api/jobs?state=submit_failed"] * n,
        "/api/jobs?provider=tencent": ["/api/jobs?provider=tencent"] * n,
        "/api/jobs?service=mps": ["/api/jobs?service=mps"] * n,
        "/api/jobs?kind=edge_transcode": ["/api/jobs?kind=edge_transcode"] * n,
        "/api/jobs?q=<ledger id>": [f"/api/jobs?q={pick()['id']}" for _ in range(n)],
        "/api/jobs?q=<provider job id>": [
            f"/api/jobs?q={q(rng.choice(with_pjid)['pjid'])}" for _ in range(n)
        ],
        "/api/jobs?q=<media id>": [f"/api/jobs?q={q(pick()['media'])}" for _ in range(n)],
        "/api/jobs?q=<unknown>": [f"/api/jobs?q=nope{i}" for i in range(n)],
        "/api/jobs?since=<t>&until=<t+1h>": [
            "/api/jobs?since={}&until={}".format(*map(q, window(1))) for _ in range(n)
        ],
        "/api/jobs?since=<t>": [f"/api/jobs?since={q(window(1)[0])}" for _ in range(n)],
        "/api/jobs?until=<t>": [f"/api/jobs?until={q(window(1)[0])}" for _ in range(n)],
        "/api/jobs?cursor=<random>": [
            f"/api/jobs?cursor={encode_cursor(pick()['id'])}" for _ in range(n)
        ],
        "/api/jobs?state=failed&cursor=<random>": [
            f"/api/jobs?state=failed&cursor={encode_cursor(pick()['id'])}" for _ in range(n)
        ],
        "/api/jobs?limit=500": ["/api/jobs?limit=500"] * max(n // 3, 20),
        "/api/jobs/<id>": [f"/api/jobs/{pick()['id']}" for _ in range(n)],
        "/api/stats": ["/api/stats"] * n,
        "/api/health/providers": ["/api/health/providers"] * n,
        "/api/jobs?slow=true": ["/api/jobs?slow=true"] * n,
        # two filters at once (not a target; shows where one index is not enough)
        "/api/jobs?state=failed&provider=tencent": ["/api/jobs?state=failed&provider=tencent"] * n,
        "/api/jobs?state=failed&kind=edge_transcode": ["/api/jobs?state=failed&kind=edge_transcode"]
        * max(n // 10, 10),
        "/api/jobs?state=processing&state=submitted": ["/api/jobs?state=processing&state=submitted"]
        * max(n // 10, 10),
        # HTML pages
        "/ (dashboard)": ["/"] * n,
        "/jobs": ["/jobs"] * n,
        "/jobs?state=failed": ["/jobs?state=failed"] * n,
        "/jobs?slow=true": ["/jobs?slow=true"] * n,
        "/jobs/<id>": [f"/jobs/{pick()['id']}" for _ in range(n)],
    }
    return out


def target_of(name: str) -> float | None:
    if "&" in name.split("?", 1)[-1] and "since" not in name and "cursor" not in name:
        return None  # combined filters: informational
    if name.startswith(("/api/jobs/<id>", "/jobs/<id>")):
        return TARGETS["detail"]
    if name.startswith(("/api/stats", "/ (dashboard)", "/api/health")):
        return TARGETS["stats"]
    if name.startswith(("/api/jobs", "/jobs")):
        return TARGETS["list"]
    return None


def measure(client: Client, paths: dict[str, list[str]]) -> dict[str, dict]:
    results = {}
    for name, urls in paths.items():
        for url in urls[:5]:  # warm this endpoint's statements and pages
            client.get(url)
        times, statuses = [], {}
        for url in urls:
            status, _, ms = client.get(url)
            statuses[status] = statuses.get(status, 0) + 1
            times.append(ms)
        results[name] = {
            "n": len(times),
            "p50": percentile(times, 50),
            "p95": percentile(times, 95),
            "max": max(times),
            "statuses": statuses,
            "target": target_of(name),
        }
        print(
            f"    {name:45} p50 {results[name]['p50']:7.1f} p95 {results[name]['p95']:7.1f} ms"
            f"  {statuses}",
            file=sys.stderr,
            flush=True,
        )
    return results


def plan_cases(rows: list[dict]) -> dict[str, dict]:
    """jobs.search arguments whose SQL the plans are shown for."""
    one = rows[0]
    at = datetime.fromisoformat(one["at"].replace("Z", "+00:00"))
    return {
        "no filter": {},
        "state": {"filters": {"state": ["failed"]}},
        "two states": {"filters": {"state": ["processing", "submitted"]}},
        "provider": {"filters": {"provider": ["tencent"]}},
        "service": {"filters": {"service": ["mps"]}},
        "kind": {"filters": {"kind": ["edge_transcode"]}},
        "q": {"q": one["pjid"] or one["media"]},
        "since+until": {"since": at, "until": at + timedelta(hours=1)},
        "cursor": {"cursor": encode_cursor(one["id"])},
        "state+cursor": {"filters": {"state": ["failed"]}, "cursor": encode_cursor(one["id"])},
        "state+provider": {"filters": {"state": ["failed"], "provider": ["tencent"]}},
        "state+kind": {"filters": {"state": ["failed"], "kind": ["edge_transcode"]}},
    }


def query_plans(db: Path, rows: list[dict]) -> list[dict]:
    """EXPLAIN QUERY PLAN of the SQL that jobs.search runs for each filter."""
    out = []
    with open_ledger(db) as ledger:
        for name, kwargs in plan_cases(rows).items():
            seen = []
            ledger.conn.set_trace_callback(seen.append)
            started = time.perf_counter()
            ledger.jobs.search(**kwargs)
            ms = (time.perf_counter() - started) * 1000
            ledger.conn.set_trace_callback(None)
            sql = next(s for s in seen if s.lstrip().upper().startswith("SELECT"))
            plan = [r[3] for r in ledger.conn.execute("EXPLAIN QUERY PLAN " + sql)]
            flags = [
                p for p in plan if p.startswith("SCAN") and "USING" not in p or "TEMP B-TREE" in p
            ]
            out.append({"case": name, "sql": sql, "plan": plan, "flags": flags, "ms": ms})
        for name, sql in (
            ("job detail events", "SELECT * FROM events WHERE job_id = 'x' ORDER BY id"),
            ("stats", "SELECT provider, service, kind, state, n FROM job_counts WHERE n != 0"),
        ):
            plan = [r[3] for r in ledger.conn.execute("EXPLAIN QUERY PLAN " + sql)]
            out.append({"case": name, "sql": sql, "plan": plan, "flags": [], "ms": None})
    return out


def db_size(db: Path) -> dict:
    """Bytes in use (the file keeps free pages after the ingest rows are removed)."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        one = lambda sql: conn.execute(sql).fetchone()[0]  # noqa: E731
        events = one("SELECT COUNT(*) FROM events")
        jobs = one("SELECT COUNT(*) FROM jobs")
        used = (one("PRAGMA page_count") - one("PRAGMA freelist_count")) * one("PRAGMA page_size")
        by_object = dict(
            conn.execute("SELECT name, SUM(pgsize) FROM dbstat GROUP BY name").fetchall()
        )
        payload = one("SELECT SUM(LENGTH(CAST(payload AS BLOB))) FROM events")
    finally:
        conn.close()
    return {
        "jobs": jobs,
        "events": events,
        "bytes": used,
        "file_bytes": db.stat().st_size,
        "payload_bytes": payload,
        "bytes_per_million_events": used / events * 1e6 if events else None,
        "by_object": by_object,
    }


def ingest_at_size(db: Path | str, args, tmp: Path) -> dict:
    """wrk on the big ledger vs an empty one, alternating; the big one is restored after."""
    if is_url(db):
        empty = pg_scale.create_empty(db, EMPTY_PG)
        snap = pg_scale.snapshot(db)
    else:
        empty = tmp / "empty.db"
        conn = sqlite3.connect(db)
        max_event = conn.execute("SELECT MAX(id) FROM events").fetchone()[0]
        max_job = conn.execute("SELECT MAX(id) FROM jobs").fetchone()[0]
        counts = conn.execute("SELECT provider, service, kind, state, n FROM job_counts").fetchall()
        conn.close()
    migrate(empty)
    logdir = OUT / f"logs-scale-{args.stamp}"
    extra = dict(kv.split("=", 1) for kv in args.env)
    servers = {
        "empty": Server(args.app, {**ledger_env(empty), **extra}, logdir).start(),
        "big": Server(args.app, {**ledger_env(db), **extra}, logdir).start(),
    }
    rounds = {"empty": [], "big": []}
    try:
        for name, server in servers.items():
            run_wrk(server.base, write_lua(tmp / f"warm-{name}.lua", f"warm-{name}"), 2)
        for r in range(args.ingest_rounds):
            for name, server in servers.items():
                script = write_lua(tmp / f"{name}-{r}.lua", f"scale-{name}-{r}")
                cpu0 = server.cpu_seconds()
                result = run_wrk(server.base, script, args.ingest_duration)
                result["cpu_ms_per_req"] = (
                    (server.cpu_seconds() - cpu0) * 1000 / max(result["requests"], 1)
                )
                rounds[name].append(result)
                print(
                    f"    ingest {name:5} round {r + 1}: {result['rps']:.0f} req/s "
                    f"p99 {result['p99_us'] / 1000:.1f} ms non-200 {result['other']} "
                    f"server CPU {result['cpu_ms_per_req']:.2f} ms/req",
                    file=sys.stderr,
                    flush=True,
                )
        rss = {name: s.worker_rss_mb() for name, s in servers.items()}
    finally:
        for server in servers.values():
            server.stop()
    if is_url(db):
        pg_scale.drop_database(db, EMPTY_PG)
        pg_scale.restore(db, snap)
    else:
        conn = sqlite3.connect(db)
        with conn:
            conn.execute("DELETE FROM events WHERE id > ?", (max_event,))
            conn.execute("DELETE FROM jobs WHERE id > ?", (max_job,))
            conn.execute("DELETE FROM job_counts")
            conn.executemany("INSERT INTO job_counts VALUES (?, ?, ?, ?, ?)", counts)
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        conn.close()
    rps = {name: median(r["rps"] for r in rs) for name, rs in rounds.items()}
    cpu = {name: median(r["cpu_ms_per_req"] for r in rs) for name, rs in rounds.items()}
    return {
        "rounds": rounds,
        "rps": rps,
        "cpu_ms_per_req": cpu,
        "ratio": rps["big"] / rps["empty"],
        "p99_ms": {n: max(r["p99_us"] for r in rs) / 1000 for n, rs in rounds.items()},
        "rss_after_ingest_mb": rss,
    }


def worker_memory(server: Server) -> list[dict]:
    out = []
    for pid in server.workers():
        fields = {}
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith(("VmRSS:", "VmHWM:")):
                        key, value = line.split(":")
                        fields[key] = int(value.split()[0]) / 1024
        except OSError:
            continue
        out.append({"pid": pid, "rss_mb": fields.get("VmRSS"), "hwm_mb": fields.get("VmHWM")})
    return out


def health_passes(db: Path | str) -> dict:
    """Time the reconcile pass's provider health work on this ledger: the first pass (which
    counts the last week's settled jobs) and the next one (what every 15 s costs)."""
    from receiver.background.health import health_pass
    from receiver.config import defaults

    config = defaults()
    out = {}
    with open_ledger(db) as ledger:
        for name in ("first", "steady", "steady again"):
            started = time.perf_counter()
            result = health_pass(config, ledger)
            out[name] = {"ms": (time.perf_counter() - started) * 1000, **result}
            print(f"    health pass ({name}): {out[name]}", file=sys.stderr, flush=True)
    return out


def run_size(jobs: int, args, tmp: Path) -> dict:
    db = default_path(jobs)
    generation = None
    if not db.exists() or args.regenerate:
        print(f"  generating {jobs:,} jobs into {db}", file=sys.stderr, flush=True)
        generation = generate(db, jobs)
        print(f"  generated: {generation}", file=sys.stderr, flush=True)
    if args.database:
        # A database of the caller's that holds this ledger already is measured as it is.
        if args.regenerate or generation or pg_scale.job_count(args.database) != jobs:
            print(f"  {jobs:,} jobs: loading into PostgreSQL", file=sys.stderr, flush=True)
            loaded = load(db, args.database)
            print(f"  loaded: {loaded}", file=sys.stderr, flush=True)
            generation = {"sqlite": generation, "postgresql": loaded}
        db = args.database
    if args.only_ingest:
        return {"jobs": jobs, "ingest": ingest_at_size(db, args, tmp)}
    engine = pg_scale if args.database else sys.modules[__name__]
    size = engine.db_size(db)
    rows = engine.sample_rows(db, 2000)
    print(f"  {jobs:,} jobs: query plans", file=sys.stderr, flush=True)
    plans = engine.query_plans(db, rows)
    print(f"  {jobs:,} jobs: provider health passes", file=sys.stderr, flush=True)
    health = health_passes(db)
    server = Server("wsgi:app", ledger_env(db), OUT / f"logs-scale-{args.stamp}").start()
    try:
        client = Client(server.port)
        print(f"  {jobs:,} jobs: latency", file=sys.stderr, flush=True)
        latency = measure(client, endpoints(rows, args.requests))
        memory = worker_memory(server)
    finally:
        server.stop()
    ingest = None
    if not args.no_ingest:
        print(f"  {jobs:,} jobs: ingest vs empty", file=sys.stderr, flush=True)
        ingest = ingest_at_size(db, args, tmp)
    retention = None
    if args.database and generation:  # it prunes: only on a ledger loaded by this run
        print(f"  {jobs:,} jobs: one retention pass", file=sys.stderr, flush=True)
        retention = pg_scale.retention_pass(db)
    return {
        "jobs": jobs,
        "engine": "postgresql" if args.database else "sqlite",
        "retention": retention,
        "generation": generation,
        "size": size,
        "plans": plans,
        "latency": latency,
        "memory": memory,
        "ingest": ingest,
        "health": health,
    }


def report(results: list[dict]) -> str:
    lines = []
    for res in results:
        lines += [
            f"### {res['jobs']:,} jobs / {res['size']['events']:,} events ({res['engine']})",
            "",
            "| request | p50 ms | p95 ms | max ms | target p95 | |",
            "| --- | ---: | ---: | ---: | ---: | --- |",
        ]
        for name, m in res["latency"].items():
            if "skipped" in m:
                lines.append(f"| `{name}` | | | | | skipped: {m['skipped']} |")
                continue
            target = m["target"]
            verdict = "" if target is None else ("ok" if m["p95"] <= target else "**MISSED**")
            bad = {s: n for s, n in m["statuses"].items() if s != 200}
            lines.append(
                f"| `{name}` | {m['p50']:.1f} | {m['p95']:.1f} | {m['max']:.1f} "
                f"| {target if target else '-'} "
                f"| {verdict}{' non-200: ' + str(bad) if bad else ''} |"
            )
        rss = [w["rss_mb"] for w in res["memory"]]
        hwm = [w["hwm_mb"] for w in res["memory"]]
        lines += [
            "",
            f"- database: {res['size']['bytes'] / 2**20:,.0f} MiB, "
            f"{res['size']['bytes_per_million_events'] / 2**20:,.0f} MiB per million events"
            f" (raw payloads: {res['size']['payload_bytes'] / res['size']['bytes']:.0%} of it;"
            f" events table {res['size']['by_object'].get('events', 0) / 2**20:,.0f} MiB,"
            f" jobs {res['size']['by_object'].get('jobs', 0) / 2**20:,.0f} MiB)",
            f"- worker RSS after the queries: {', '.join(f'{r:.0f}' for r in rss)} MiB "
            f"(peak VmHWM {max(hwm):.0f} MiB; target 120)",
            "- provider health pass (reconcile, background): "
            + ", ".join(f"{k} {v['ms']:.0f} ms" for k, v in res["health"].items()),
        ]
        if res["ingest"]:
            ing = res["ingest"]
            lines.append(
                f"- ingest: {ing['rps']['big']:,.0f} req/s at this size"
                f" vs {ing['rps']['empty']:,.0f} on an empty ledger:"
                f" **{ing['ratio']:.2f}** (target 0.9); server CPU"
                f" {ing['cpu_ms_per_req']['big']:.2f} vs {ing['cpu_ms_per_req']['empty']:.2f}"
                " ms/req; p99 "
                f"{ing['p99_ms']['big']:.0f} / {ing['p99_ms']['empty']:.0f} ms"
            )
        if res["retention"]:
            ret = res["retention"]
            lines.append(
                f"- one retention pass (payloads before {ret['cutoff']}):"
                f" {ret['pruned']:,} pruned in {ret['seconds']:.1f} s"
            )
        flagged = [p for p in res["plans"] if p["flags"]]
        if flagged:
            lines.append(
                "- query plans with a sequential or bitmap heap scan, or a sort:"
                if res["engine"] == "postgresql"
                else "- query plans with a full scan or a temp B-tree:"
            )
            for p in flagged:
                shown = p["flags"] if res["engine"] == "postgresql" else p["plan"]
                lines.append(f"  - {p['case']} ({p['ms']:.1f} ms in-process): {'; '.join(shown)}")
        lines.append("")
    if len(results) > 1:
        lines += [
            "### Cost curve",
            "",
            "| jobs | events | MiB | MiB / M events | worst single-filter list p95 | detail p95"
            " | stats p95 | ingest req/s at size (empty) | ingest ratio | worker RSS max |",
            "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for res in results:
            lat = res["latency"]
            lists = [
                m["p95"]
                for n, m in lat.items()
                if "skipped" not in m and m["target"] == TARGETS["list"] and n.startswith("/api")
            ]
            ing = res["ingest"] or {
                "rps": {"big": float("nan"), "empty": float("nan")},
                "ratio": float("nan"),
            }
            lines.append(
                f"| {res['jobs']:,} | {res['size']['events']:,} "
                f"| {res['size']['bytes'] / 2**20:,.0f} "
                f"| {res['size']['bytes_per_million_events'] / 2**20:,.0f} | {max(lists):.1f} "
                f"| {lat['/api/jobs/<id>']['p95']:.1f} | {lat['/api/stats']['p95']:.1f} "
                f"| {ing['rps']['big']:,.0f} ({ing['rps']['empty']:,.0f}) | {ing['ratio']:.2f} "
                f"| {max(w['rss_mb'] for w in res['memory']):.0f} |"
            )
    return "\n".join(lines)


def start_cluster() -> DurableCluster:
    """A throwaway PostgreSQL cluster whose data directory lies under bench/out/."""
    previous, tempfile.tempdir = tempfile.tempdir, str(OUT)
    try:
        return DurableCluster()
    finally:
        tempfile.tempdir = previous


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=1_000_000)
    parser.add_argument("--curve", help="comma-separated sizes, e.g. 10000,100000,1000000")
    parser.add_argument("--requests", type=int, default=300, help="requests per endpoint")
    parser.add_argument("--ingest-rounds", type=int, default=4)
    parser.add_argument("--ingest-duration", type=float, default=8)
    parser.add_argument("--no-ingest", action="store_true")
    parser.add_argument("--only-ingest", action="store_true", help="skip the queries")
    parser.add_argument("--app", default="wsgi:app", help="app for the ingest part (experiments)")
    parser.add_argument("--env", action="append", default=[], help="KEY=VALUE (experiments)")
    parser.add_argument(
        "--regenerate", action="store_true", help="rebuild the ledger even if present"
    )
    parser.add_argument("--engine", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument(
        "--database",
        help="postgresql://... to load and measure (default with --engine postgresql:"
        " a throwaway cluster)",
    )
    args = parser.parse_args(argv)
    if args.database and not is_url(args.database):
        parser.error("--database takes a postgresql:// URL")
    args.stamp = time.strftime("%Y%m%d-%H%M%S")
    if not args.no_ingest:
        ensure_wrk()
    OUT.mkdir(parents=True, exist_ok=True)
    sizes = [int(s) for s in args.curve.split(",")] if args.curve else [args.jobs]
    print(f"machine: {machine()}", file=sys.stderr)
    cluster = None
    if args.engine == "postgresql" and not args.database:
        cluster = start_cluster()
        args.database = cluster.url
    try:
        if args.database:
            print(f"PostgreSQL {pg_scale.server_version(args.database)}", file=sys.stderr)
        results = []
        with tempfile.TemporaryDirectory(prefix="jobledger-scale-") as tmp:
            for jobs in sizes:
                results.append(run_size(jobs, args, Path(tmp)))
    finally:
        if cluster is not None:
            cluster.stop()  # and its directory
    if args.only_ingest:
        for res in results:
            ing = res["ingest"]
            print(
                f"{res['jobs']:,} jobs, {args.app} {' '.join(args.env)}:"
                f" {ing['rps']['big']:,.0f} req/s vs {ing['rps']['empty']:,.0f} empty"
                f" = {ing['ratio']:.2f}; server CPU {ing['cpu_ms_per_req']['big']:.2f}"
                f" vs {ing['cpu_ms_per_req']['empty']:.2f} ms/req; p99 "
                f"{ing['p99_ms']['big']:.0f} / {ing['p99_ms']['empty']:.0f} ms"
            )
    else:
        print(report(results))
    if cluster is not None:
        args.database = "throwaway cluster"
    elif args.database:
        args.database = redact(args.database)  # the raw figures never hold a password
    out = OUT / f"scale-{args.stamp}.json"
    out.write_text(
        json.dumps(
            {"machine": machine(), "args": vars(args), "results": results}, indent=1, default=str
        )
    )
    print(f"\nraw figures: bench/out/{out.name}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
