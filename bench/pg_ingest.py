"""Ingest on PostgreSQL against the same app on SQLite: one run, alternating rounds.

    .venv/bin/python -m bench.pg_ingest                   # 3 rounds of 10 s each
    .venv/bin/python -m bench.pg_ingest --rounds 2 --duration 6
    .venv/bin/python -m bench.pg_ingest --instances 1,2,3   # 1, 2 and 3 web instances sharing it

Starts a throwaway PostgreSQL cluster from Debian's server binaries (durable settings:
fsync and synchronous_commit on, as production must run), migrates a ledger there and one
in an SQLite file, and serves each with the project's gunicorn.conf.py. wrk sends the same
signed VOD callbacks as bench/ingest.py to each in turn. Reported per engine: requests/s,
p50/p99, and server CPU per notice split into the web workers and PostgreSQL's own
processes, from which the throughput of N web hosts sharing one server follows. Afterwards
each ledger must hold exactly one event per 200 in its access log.
"""

import argparse
import glob
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

from bench.common import (
    Server,
    children,
    cpu_of,
    ensure_wrk,
    ledger_env,
    machine,
    median,
    run_wrk,
    write_lua,
)
from store import migrate, open_ledger


class DurableCluster:
    """A PostgreSQL cluster in a temporary directory, reached over its Unix socket."""

    def __init__(self):
        found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), reverse=True)
        if not found:
            sys.exit("PostgreSQL server binaries not found: apt-get install -y postgresql")
        self.bindir = Path(found[0]).parent
        self.root = Path(tempfile.mkdtemp(prefix="jobledger-bench-pg-"))
        self.as_user: list[str] = []
        if os.geteuid() == 0:  # initdb refuses to run as root
            user = pwd.getpwnam("postgres")
            os.chown(self.root, user.pw_uid, user.pw_gid)
            self.as_user = ["runuser", "-u", "postgres", "--"]
        data = self.root / "data"
        self._run("initdb", "-D", str(data), "-A", "trust", "-U", "postgres", "-E", "UTF8")
        options = (
            f"-c listen_addresses='' -c unix_socket_directories='{self.root}'"
            " -c max_connections=200 -c shared_buffers=128MB"
        )
        self._run("pg_ctl", "-D", str(data), "-o", options, "-l", str(self.root / "log"), "-w")
        self._run("createdb", "-h", str(self.root), "-U", "postgres", "ledger")
        self.url = f"postgresql://postgres@/ledger?host={self.root}"
        pidfile = data / "postmaster.pid"
        self.pid = int(pidfile.read_text().split()[0])

    def _run(self, program: str, *args: str) -> None:
        if program == "pg_ctl":
            args = (*args, "start")
        subprocess.run(
            [*self.as_user, str(self.bindir / program), *args],
            check=True,
            capture_output=True,
            cwd=self.root,
        )

    def cpu_seconds(self) -> float:
        """CPU of the postmaster and every backend it runs."""
        return cpu_of(self.pid, with_children=True) + sum(cpu_of(p) for p in children(self.pid))

    def stop(self) -> None:
        data = str(self.root / "data")
        subprocess.run(
            [*self.as_user, str(self.bindir / "pg_ctl"), "-D", data, "-m", "fast", "stop"],
            capture_output=True,
            cwd=self.root,
        )
        shutil.rmtree(self.root, ignore_errors=True)


def count_events(database: str) -> int:
    with open_ledger(database) as ledger:
        return ledger.conn.execute("SELECT COUNT(*) FROM events").fetchone()[0]


def shared_round(servers: list[Server], tag: str, args, tmp: Path) -> dict:
    """One round of wrk against every instance at once (connections split between them)."""
    per = max(1, args.connections // len(servers))
    scripts = [write_lua(tmp / f"{tag}-{i}.lua", f"{tag}-{i}") for i in range(len(servers))]
    results: list[dict] = [{}] * len(servers)
    web0 = sum(s.cpu_seconds() for s in servers)

    def run(i: int) -> None:
        results[i] = run_wrk(servers[i].base, scripts[i], args.duration, per, 1)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(servers))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    web = sum(s.cpu_seconds() for s in servers) - web0
    n = max(sum(r["requests"] for r in results), 1)
    return {
        "rps": sum(r["rps"] for r in results),
        "p50_us": max(r["p50_us"] for r in results),
        "p99_us": max(r["p99_us"] for r in results),
        "requests": n,
        "web_cpu_s": web,
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=10)
    parser.add_argument("--warmup", type=float, default=3)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument(
        "--instances",
        default="1",
        help="comma-separated numbers of web instances sharing the PostgreSQL ledger, e.g. 1,2,3"
        " (each a gunicorn with the project's config; the connections are split between them)",
    )
    args = parser.parse_args(argv)
    counts = [int(n) for n in args.instances.split(",")]
    ensure_wrk()
    print(f"machine: {machine()}", file=sys.stderr)
    cluster = DurableCluster()
    tmp = Path(tempfile.mkdtemp(prefix="jobledger-pg-ingest-"))
    sqlite_db = str(tmp / "ledger.db")
    setups = {"sqlite": (sqlite_db, 1)} | {f"postgresql x{n}": (cluster.url, n) for n in counts}
    servers: dict[str, list[Server]] = {}
    rounds: dict[str, list] = {name: [] for name in setups}
    try:
        migrate(sqlite_db)
        migrate(cluster.url)
        for name, (database, n) in setups.items():
            env = ledger_env(Path("unused"), "normal")
            env["RECEIVER_DATABASE"] = database
            servers[name] = [Server("wsgi:app", env, tmp / "logs").start() for _ in range(n)]
            shared_round(servers[name], f"{name}-warm".replace(" ", ""), _warm(args), tmp)
        for r in range(args.rounds):
            for name, group in servers.items():
                pg0 = cluster.cpu_seconds()
                result = shared_round(group, f"{name}-r{r}".replace(" ", ""), args, tmp)
                n = result["requests"]
                result["web_cpu_ms"] = result["web_cpu_s"] * 1000 / n
                result["pg_cpu_ms"] = (
                    (cluster.cpu_seconds() - pg0) * 1000 / n if name != "sqlite" else 0.0
                )
                rounds[name].append(result)
                print(
                    f"  round {r + 1} {name:14} {result['rps']:7.0f} req/s"
                    f" p99 {result['p99_us'] / 1000:6.1f} ms web {result['web_cpu_ms']:.2f}"
                    f" pg {result['pg_cpu_ms']:.2f} ms/notice",
                    file=sys.stderr,
                    flush=True,
                )
    finally:
        for group in servers.values():
            for server in group:
                server.stop()
    answered = {name: sum(s.count_status(200) for s in group) for name, group in servers.items()}
    pg_answered = sum(v for k, v in answered.items() if k != "sqlite")
    checks = {
        "sqlite": count_events(sqlite_db) == answered["sqlite"],
        "postgresql": count_events(cluster.url) == pg_answered,
    }
    cluster.stop()
    rps = {name: median(r["rps"] for r in rs) for name, rs in rounds.items()}
    print(
        f"Ingest, {args.connections} connections in all, {args.rounds} alternating rounds of"
        f" {args.duration:g} s (median; p99 = worst round)\n"
    )
    print(
        "| ledger | web instances | req/s | p50 ms | p99 ms | web CPU ms/notice"
        " | PostgreSQL CPU ms/notice |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name, rs in rounds.items():
        print(
            f"| {name.split()[0]} | {setups[name][1]} | {rps[name]:,.0f}"
            f" | {median(r['p50_us'] for r in rs) / 1000:.1f}"
            f" | {max(r['p99_us'] for r in rs) / 1000:.1f}"
            f" | {median(r['web_cpu_ms'] for r in rs):.2f}"
            f" | {median(r['pg_cpu_ms'] for r in rs):.2f} |"
        )
    for name in rounds:
        if name != "sqlite":
            print(f"\n{name}: {rps[name] / rps['sqlite']:.2f} of SQLite", end="")
    print(
        f"\n\nevery 200 in its ledger: sqlite {'ok' if checks['sqlite'] else 'FAILED'},"
        f" postgresql {'ok' if checks['postgresql'] else 'FAILED'}"
        f" ({pg_answered:,} answered by all instances)"
    )
    shutil.rmtree(tmp, ignore_errors=True)
    return 0 if all(checks.values()) else 1


def _warm(args) -> argparse.Namespace:
    return argparse.Namespace(**{**vars(args), "duration": args.warmup})


if __name__ == "__main__":
    sys.exit(main())
