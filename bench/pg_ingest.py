"""Ingest on PostgreSQL against the same app on SQLite: one run, alternating rounds.

    .venv/bin/python -m bench.pg_ingest                   # 3 rounds of 10 s each
    .venv/bin/python -m bench.pg_ingest --rounds 2 --duration 6

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


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=10)
    parser.add_argument("--warmup", type=float, default=3)
    parser.add_argument("--connections", type=int, default=32)
    args = parser.parse_args(argv)
    ensure_wrk()
    print(f"machine: {machine()}", file=sys.stderr)
    cluster = DurableCluster()
    tmp = Path(tempfile.mkdtemp(prefix="jobledger-pg-ingest-"))
    databases = {"sqlite": str(tmp / "ledger.db"), "postgresql": cluster.url}
    servers, rounds, cpu_pg = {}, {name: [] for name in databases}, {name: [] for name in databases}
    try:
        for name, database in databases.items():
            migrate(database)
            env = ledger_env(Path("unused"), "normal")
            env["RECEIVER_DATABASE"] = database
            servers[name] = Server("wsgi:app", env, tmp / "logs").start()
            warm = write_lua(tmp / f"{name}-warm.lua", f"{name}-warm")
            run_wrk(servers[name].base, warm, args.warmup, args.connections)
        for r in range(args.rounds):
            for name, server in servers.items():
                script = write_lua(tmp / f"{name}-{r}.lua", f"{name}-r{r}")
                web0, pg0 = server.cpu_seconds(), cluster.cpu_seconds()
                result = run_wrk(server.base, script, args.duration, args.connections)
                n = max(result["requests"], 1)
                result["web_cpu_ms"] = (server.cpu_seconds() - web0) * 1000 / n
                result["pg_cpu_ms"] = (cluster.cpu_seconds() - pg0) * 1000 / n
                rounds[name].append(result)
                cpu_pg[name].append(result["pg_cpu_ms"])
                print(
                    f"  round {r + 1} {name:10} {result['rps']:7.0f} req/s"
                    f" p99 {result['p99_us'] / 1000:6.1f} ms web {result['web_cpu_ms']:.2f}"
                    f" pg {result['pg_cpu_ms']:.2f} ms/notice",
                    file=sys.stderr,
                    flush=True,
                )
    finally:
        for server in servers.values():
            server.stop()
    checks = {
        name: count_events(db) == servers[name].count_status(200) for name, db in databases.items()
    }
    cluster.stop()
    rps = {name: median(r["rps"] for r in rs) for name, rs in rounds.items()}
    print(
        f"Ingest, {args.connections} connections, {args.rounds} alternating rounds of"
        f" {args.duration:g} s (median; p99 = worst round)\n"
    )
    print(
        "| ledger | req/s | p50 ms | p99 ms | web CPU ms/notice | PostgreSQL CPU ms/notice"
        " | events = 200s |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | --- |")
    for name, rs in rounds.items():
        print(
            f"| {name} | {rps[name]:,.0f} | {median(r['p50_us'] for r in rs) / 1000:.1f}"
            f" | {max(r['p99_us'] for r in rs) / 1000:.1f}"
            f" | {median(r['web_cpu_ms'] for r in rs):.2f}"
            f" | {median(cpu_pg[name]) if name == 'postgresql' else 0:.2f}"
            f" | {'ok' if checks[name] else 'FAILED'} |"
        )
    print(f"\nPostgreSQL / SQLite: **{rps['postgresql'] / rps['sqlite']:.2f}**")
    shutil.rmtree(tmp, ignore_errors=True)
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
