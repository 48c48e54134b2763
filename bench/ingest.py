"""Ingest benchmark: jobledger vs two baselines, same gunicorn config, same wrk, alternating.

The baselines: `bench/bare_app.py` (parse the JSON, answer 200) and `bench/durable_app.py`
(the simplest durable receiver: verify, parse, INSERT the raw body under a unique hash in
SQLite WAL, commit per request, answer 200). The ratio that matters is jobledger against
the durable receiver; the durable receiver against the bare app shows what durability costs.

    .venv/bin/python -m bench.ingest                     # normal and full, 3 rounds of 10 s each
    .venv/bin/python -m bench.ingest --durability full --rounds 5 --duration 15
    .venv/bin/python -m bench.ingest --profile           # also py-spy the jobledger workers
    .venv/bin/python -m bench.ingest --endpoints 3       # also jobledger with 3 endpoints

Each request is a signed VOD `TranscodeComplete` for a new VideoId (a new event and a new
job), POSTed to /hooks/aliyun/vod by wrk with a generated Lua script, 32 connections by
default. All three apps run under `gunicorn -c gunicorn.conf.py` with the same environment
(WEB_CONCURRENCY, GUNICORN_THREADS: the project's defaults unless --workers/--threads),
access log on as in production. Rounds alternate bare, durable, jobledger, bare, ...
Afterwards jobledger is stopped gracefully and the ledger must hold exactly one event (and
one job) per 200 in its access log; the 200s wrk saw may be fewer by the requests in flight
when wrk stopped (answered, but to a closed connection).

With --endpoints N, a fourth app joins the rounds: jobledger on a ledger of its own with N
endpoints registered (each a bench/sink.py process on loopback); its ratio is against plain
jobledger. A `deliver` process sends the messages after the rounds, or, with --deliver,
while they run (then it competes with the apps and wrk for the same CPUs). Either way every
message must reach every sink.

Needs wrk (`apt-get install -y wrk`; installed automatically when run as root). --profile
needs py-spy (`.venv/bin/pip install py-spy`). Output: a markdown table on stdout and the raw
figures in bench/out/ingest-*.json.
"""

import argparse
import collections
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import (
    OUT,
    Server,
    ensure_wrk,
    ledger_env,
    machine,
    median,
    run_wrk,
    write_lua,
)
from store import migrate, open_ledger


class SqliteEngine:
    """Each app's database is a file in the run's temporary directory."""

    name = "sqlite"

    def __init__(self, workdir: Path):
        self.workdir = workdir

    def databases(self, durability: str) -> tuple[str, str]:
        """Return the ledger and the durable receiver's database for one durability."""
        return (
            str(self.workdir / f"ingest-{durability}.db"),
            str(self.workdir / f"durable-{durability}.db"),
        )

    def extra_database(self, name: str) -> str:
        return str(self.workdir / f"{name}.db")

    def cpu_seconds(self) -> float:
        return 0.0  # in the app's own processes

    def stop(self) -> None:
        pass


class PostgresEngine:
    """Both databases on one throwaway PostgreSQL cluster (bench/pg_ingest.py)."""

    name = "postgresql"

    def __init__(self):
        from bench.pg_ingest import DurableCluster

        self.cluster = DurableCluster()

    def databases(self, durability: str) -> tuple[str, str]:
        import psycopg

        urls = []
        with psycopg.connect(self.cluster.url, autocommit=True) as admin:
            for name in (f"ledger_{durability}", f"durable_{durability}"):
                admin.execute(f"CREATE DATABASE {name}")
                urls.append(self.cluster.url.replace("/ledger?", f"/{name}?"))
        with psycopg.connect(urls[1], autocommit=True) as conn:  # before its threads race to
            conn.execute("CREATE TABLE notices (hash bytea UNIQUE, body text)")
        return urls[0], urls[1]

    def extra_database(self, name: str) -> str:
        import psycopg

        with psycopg.connect(self.cluster.url, autocommit=True) as admin:
            admin.execute(f"CREATE DATABASE {name.replace('-', '_')}")
        return self.cluster.url.replace("/ledger?", f"/{name.replace('-', '_')}?")

    def cpu_seconds(self) -> float:
        return self.cluster.cpu_seconds()

    def stop(self) -> None:
        self.cluster.stop()


def one_round(server: Server, script: Path, args) -> dict:
    cpu0, db0 = server.cpu_seconds(), args.engine.cpu_seconds()
    result = run_wrk(server.base, script, args.duration, args.connections, args.wrk_threads)
    cpu, db_cpu = server.cpu_seconds() - cpu0, args.engine.cpu_seconds() - db0
    n = max(result["requests"], 1)
    # Server CPU counts the database server's processes too (PostgreSQL), shown apart.
    result["server_cpu_ms_per_req"] = (cpu + db_cpu) * 1000 / n
    result["db_cpu_ms_per_req"] = db_cpu * 1000 / n
    result["server_cpu_share"] = (cpu + db_cpu) / (result["duration_us"] / 1e6)
    return result


def _query(database: str, sql: str):
    if database.startswith("postgresql://"):
        import psycopg

        with psycopg.connect(database) as conn:
            value = conn.execute(sql).fetchone()[0]  # type: ignore[index]
            return int(value) if not isinstance(value, str) else value  # SUM is numeric
    conn = sqlite3.connect(database)
    try:
        return conn.execute(sql).fetchone()[0]
    finally:
        conn.close()


def durable_rows(database: str) -> int:
    return _query(database, "SELECT COUNT(*) FROM notices")


def ledger_counts(database: str) -> dict:
    one = lambda sql: _query(database, sql)  # noqa: E731
    return {
        "events": one("SELECT COUNT(*) FROM events"),
        "originals": one("SELECT COUNT(*) FROM events WHERE duplicate_of IS NULL"),
        "jobs": one("SELECT COUNT(*) FROM jobs"),
        "counted_jobs": one("SELECT COALESCE(SUM(n), 0) FROM job_counts"),
        "integrity": (
            "ok" if database.startswith("postgresql://") else one("PRAGMA integrity_check")
        ),
    }


def profile_round(server: Server, script: Path, args, outdir: Path) -> tuple[Path | None, dict]:
    """Sample the jobledger workers with py-spy during one extra round; return the raw file."""
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(spy).exists():
        print("--profile: py-spy not found (.venv/bin/pip install py-spy)", file=sys.stderr)
        return None, one_round(server, script, args)
    raw = outdir / f"profile-{args.stamp}-{server.env['RECEIVER_DURABILITY']}-{args.profile}.txt"
    spy_proc = subprocess.Popen(
        [
            spy,
            "record",
            "--pid",
            str(server.proc.pid),
            "--subprocesses",
            "--rate",
            "250",
            "--duration",
            str(int(args.duration)),
            "--format",
            "raw",
            "--output",
            str(raw),
            "--nonblocking",
            *(["--gil"] if args.profile == "cpu" else []),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(0.5)
    result = one_round(server, script, args)
    spy_proc.wait(timeout=args.duration + 30)
    return (raw if raw.exists() else None), result


def summarize_profile(raw: Path, top: int = 30) -> dict:
    """Share of request-thread samples by frame: inclusive, and by leaf line (self)."""
    inclusive = collections.Counter()
    leaf = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        frames = stack.split(";")
        # Worker request threads only: skip the gunicorn main loops waiting in select/poll.
        if not any("handle_request" in f or "wsgi_app" in f for f in frames):
            continue
        n = int(count)
        total += n
        for f in set(frames):
            inclusive[f] += n
        leaf[frames[-1]] += n
    if not total:
        return {"inclusive": [], "self": []}
    return {
        "samples": total,
        "inclusive": [(f, 100 * n / total) for f, n in inclusive.most_common(top)],
        "self": [(f, 100 * n / total) for f, n in leaf.most_common(top)],
    }


def bench_durability(durability: str, args, workdir: Path) -> dict:
    db, durable_db = args.engine.databases(durability)
    migrate(db)
    common = {}
    if args.workers:
        common["WEB_CONCURRENCY"] = str(args.workers)
    if args.threads:
        common["GUNICORN_THREADS"] = str(args.threads)
    logdir = OUT / f"logs-{args.stamp}-{durability}"
    bare = Server("bench.bare_app:app", {**common}, logdir).start()
    env = {**ledger_env(Path(db), durability), "RECEIVER_DATABASE": db}
    durable_env = {**common, **env, "BENCH_DURABLE_DB": durable_db}
    durable = Server("bench.durable_app:app", durable_env, logdir).start()
    extra = dict(kv.split("=", 1) for kv in args.env)
    ledger = Server(args.app, {**common, **env, **extra}, logdir).start()
    servers = {"bare": bare, "durable": durable, "jobledger": ledger}
    outbound = None
    if args.endpoints:
        outbound = Outbound(args, durability, workdir, {**common, **env, **extra}, logdir)
        servers["endpoints"] = outbound.server
    rounds: dict[str, list] = {name: [] for name in servers}
    wrk_ok = dict.fromkeys(servers, 0)
    try:
        for name, server in servers.items():
            script = write_lua(workdir / f"{durability}-{name}-warm.lua", f"{durability}-warm")
            warm = run_wrk(server.base, script, args.warmup, args.connections, args.wrk_threads)
            wrk_ok[name] += warm["ok"]
        for r in range(args.rounds):
            for name, server in servers.items():
                script = write_lua(workdir / f"{durability}-{name}-{r}.lua", f"{durability}-r{r}")
                result = one_round(server, script, args)
                wrk_ok[name] += result["ok"]
                rounds[name].append(result)
                print(
                    f"  {durability:6} round {r + 1} {name:9} {result['rps']:8.0f} req/s "
                    f"p50 {result['p50_us'] / 1000:6.1f} ms p99 {result['p99_us'] / 1000:6.1f} ms "
                    f"non-200 {result['other']} cpu {result['server_cpu_ms_per_req']:.2f} ms/req",
                    file=sys.stderr,
                    flush=True,
                )
        profile = None
        if args.profile:
            script = write_lua(workdir / f"{durability}-profile.lua", f"{durability}-profile")
            raw, result = profile_round(ledger, script, args, OUT)
            wrk_ok["jobledger"] += result["ok"]
            if raw is not None:
                profile = {"raw": str(raw), "top": summarize_profile(raw), "round": result}
        rss = ledger.worker_rss_mb()
    finally:
        for server in servers.values():
            server.stop()
        delivered = outbound.finish() if outbound is not None else None
    counts = ledger_counts(db)
    answered = ledger.count_status(200)
    non_200 = sum(
        1
        for line in open(ledger.access_log, "rb")
        if b"POST /hooks/" in line and b'"status": 200,' not in line
    )
    in_flight_allowance = args.connections * (args.rounds + 1 + (1 if args.profile else 0))
    checks = {
        "events_equal_200s_answered": counts["events"] == answered,
        "one_job_per_event": counts["jobs"] == counts["events"] == counts["counted_jobs"],
        "no_duplicates": counts["originals"] == counts["events"],
        "integrity": counts["integrity"] == "ok",
        "wrk_200s_within_in_flight": 0 <= answered - wrk_ok["jobledger"] <= in_flight_allowance,
        "durable_rows_equal_200s": durable_rows(durable_db) == durable.count_status(200),
    }
    if outbound is not None and delivered is not None:
        checks["endpoints_events_equal_200s"] = delivered["events"] == delivered["answered"]
        checks["every_message_reached_every_sink"] = delivered["all_delivered"]
    return {
        "engine": args.engine.name,
        "durability": durability if args.engine.name == "sqlite" else "synchronous_commit",
        "rounds": rounds,
        "ledger": counts,
        "answered_200": answered,
        "answered_other": non_200,
        "wrk_200": wrk_ok["jobledger"],
        "checks": checks,
        "worker_rss_mb": rss,
        "db_bytes": _size(db),
        "profile": profile,
        "outbound": delivered,
    }


class Outbound:
    """jobledger with endpoints: its own ledger, N sinks, and a `deliver` process."""

    def __init__(self, args, durability: str, workdir: Path, env: dict, logdir: Path):
        from bench.deliver import Sink, start_delivers

        self.db = args.engine.extra_database(f"endpoints-{durability}")
        migrate(self.db)
        self.sinks = [Sink(workdir, f"{durability}-{i}") for i in range(args.endpoints)]
        with open_ledger(self.db) as ledger:
            for sink in self.sinks:
                ledger.endpoints.create(url=sink.url)
        env = {**env, "RECEIVER_DATABASE": self.db, "RECEIVER_DELIVERY_ALLOW_PRIVATE": "1"}
        self.server = Server("wsgi:app", env, logdir).start()
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("RECEIVER_")}
        self.start = lambda: start_delivers(1, {**full_env, **env}, workdir)
        self.delivers = self.start() if args.deliver else []

    def finish(self) -> dict:
        """Let `deliver` catch up, stop it and the sinks; say whether every message arrived."""
        from bench.deliver import stop_delivers, wait_for_lines

        messages = _query(self.db, "SELECT COUNT(*) FROM messages")
        self.delivers = self.delivers or self.start()
        arrived = wait_for_lines(self.sinks, messages, 300)
        stop_delivers(self.delivers)
        for sink in self.sinks:
            sink.stop()
        return {
            "messages": messages,
            "all_delivered": arrived,
            "events": _query(self.db, "SELECT COUNT(*) FROM events"),
            "answered": self.server.count_status(200),
        }


def _size(database: str) -> int:
    if database.startswith("postgresql://"):
        return _query(database, "SELECT pg_database_size(current_database())")
    db = Path(database)
    return db.stat().st_size + sum(
        p.stat().st_size for p in db.parent.glob(db.name + "-*") if p.exists()
    )


def table(results: list[dict], args) -> str:
    lines = [
        f"Ingest, {args.connections} connections, {args.rounds} alternating rounds of "
        f"{args.duration:g} s each (median of rounds; p99 = worst round)",
        "",
        "| engine | durability | app | req/s | p50 ms | p99 ms | server CPU ms/req"
        " | of which database | ratio |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for res in results:
        rps = {n: median(r["rps"] for r in rs) for n, rs in res["rounds"].items()}
        for name, rs in res["rounds"].items():
            ratio = {
                "durable": f"{rps['durable'] / rps['bare']:.2f} of bare",
                "jobledger": f"**{rps['jobledger'] / rps['durable']:.2f}** of durable",
                "endpoints": f"**{rps.get('endpoints', 0) / rps['jobledger']:.2f}** of jobledger",
            }.get(name, "")
            db_cpu = median(r["db_cpu_ms_per_req"] for r in rs)
            lines.append(
                f"| {res['engine']} | {res['durability']} | {name} | {rps[name]:,.0f} "
                f"| {median(r['p50_us'] for r in rs) / 1000:.1f} "
                f"| {max(r['p99_us'] for r in rs) / 1000:.1f} "
                f"| {median(r['server_cpu_ms_per_req'] for r in rs):.2f} "
                f"| {f'{db_cpu:.2f}' if res['engine'] != 'sqlite' else '–'} | {ratio} |"
            )
    lines.append("")
    lines.append(
        "| engine | durability | 200s answered (access log) | events | jobs | 200s seen by wrk"
        " | checks |"
    )
    lines.append("| --- | --- | ---: | ---: | ---: | ---: | --- |")
    for res in results:
        ok = all(res["checks"].values())
        failed = ", ".join(k for k, v in res["checks"].items() if not v)
        lines.append(
            f"| {res['engine']} | {res['durability']} | {res['answered_200']:,} "
            f"| {res['ledger']['events']:,} "
            f"| {res['ledger']['jobs']:,} | {res['wrk_200']:,} "
            f"| {'ok' if ok else 'FAILED: ' + failed} |"
        )
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--durability", default="normal,full", help="comma-separated: normal,full")
    parser.add_argument(
        "--engine",
        choices=("sqlite", "postgresql"),
        default="sqlite",
        help="where the durable receiver and jobledger write (PostgreSQL: a throwaway local"
        " cluster, synchronous_commit on; --durability does not apply)",
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=10, help="seconds per round")
    parser.add_argument("--warmup", type=float, default=3, help="seconds of warm-up per app")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--wrk-threads", type=int, default=2)
    parser.add_argument("--workers", type=int, help="WEB_CONCURRENCY (default: gunicorn.conf.py's)")
    parser.add_argument(
        "--threads", type=int, help="GUNICORN_THREADS (default: gunicorn.conf.py's)"
    )
    parser.add_argument(
        "--profile",
        choices=("wall", "cpu"),
        help="py-spy one extra jobledger round: wall time of request threads, or CPU (GIL holder)",
    )
    parser.add_argument(
        "--app", default="wsgi:app", help="the app measured against the baselines (experiments)"
    )
    parser.add_argument(
        "--env", action="append", default=[], help="KEY=VALUE for the measured app (experiments)"
    )
    parser.add_argument(
        "--endpoints",
        type=int,
        default=0,
        help="also measure jobledger with this many endpoints registered",
    )
    parser.add_argument(
        "--deliver",
        action="store_true",
        help="with --endpoints: run a deliver process during the rounds, not after them",
    )
    args = parser.parse_args(argv)
    args.stamp = time.strftime("%Y%m%d-%H%M%S")
    ensure_wrk()
    OUT.mkdir(parents=True, exist_ok=True)
    print(f"machine: {machine()}", file=sys.stderr)
    results = []
    durabilities = [d.strip() for d in args.durability.split(",") if d.strip()]
    with tempfile.TemporaryDirectory(prefix="jobledger-ingest-") as tmp:
        engine = args.engine
        args.engine = SqliteEngine(Path(tmp)) if engine == "sqlite" else PostgresEngine()
        try:
            for durability in durabilities if engine == "sqlite" else ["normal"]:
                results.append(bench_durability(durability, args, Path(tmp)))
        finally:
            args.engine.stop()
            args.engine = engine
    report = table(results, args)
    print(report)
    for res in results:
        if res["profile"]:
            for how in ("inclusive", "self"):
                print(
                    f"\nProfile {args.profile} ({res['durability']}), {how} share"
                    " of request-thread samples:"
                )
                for frame, share in res["profile"]["top"][how]:
                    print(f"  {share:5.1f}%  {frame}")
    out = OUT / f"ingest-{args.stamp}.json"
    out.write_text(
        json.dumps({"machine": machine(), "args": vars(args), "results": results}, indent=1)
    )
    print(f"\nraw figures: {out.relative_to(OUT.parent.parent)}", file=sys.stderr)
    return 0 if all(all(r["checks"].values()) for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
