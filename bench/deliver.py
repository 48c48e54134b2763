"""Delivery benchmark: how soon a job's state change reaches a healthy local endpoint while
notices keep arriving, and how many messages per second one `deliver` process sends.

    .venv/bin/python -m bench.deliver                      # 200 notices/s for 30 s, 1 deliver
    .venv/bin/python -m bench.deliver --processes 2 --endpoints 3
    .venv/bin/python -m bench.deliver --engine postgresql

Latency: jobledger runs under gunicorn (the project's config) and takes signed VOD
callbacks at --rate per second, each a new job (one change, one message); --processes
`deliver` processes send every message to --endpoints endpoints, each a sink process of its
own (bench/sink.py) answering 204 on loopback. A message's latency is its arrival at the
sink minus the change's time (the message's `timestamp`, written in the change's own
transaction): p50 and p99 over every message of the run.

Throughput: with no `deliver` running, --backlog notices are recorded; one `deliver`
process then starts, and the time until the sink holds all of them gives messages per
second for one process (to one endpoint).

Output: a markdown table on stdout, the raw figures in bench/out/deliver-*.json.
"""

import argparse
import http.client
import itertools
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path

from bench.common import (
    OUT,
    ROOT,
    TEMPLATE,
    Server,
    cpu_of,
    free_port,
    ledger_env,
    machine,
    vod_headers,
)
from store import migrate, open_ledger


def body_for(prefix: str, i: int) -> bytes:
    return json.dumps(dict(TEMPLATE, VideoId=f"{prefix}-{i}")).encode()


class Sink:
    """A bench/sink.py process and the file it writes."""

    def __init__(self, workdir: Path, name: str):
        self.port, self.path = free_port(), workdir / f"sink-{name}.txt"
        self.path.touch()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench.sink", str(self.port), str(self.path)], cwd=ROOT
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                http.client.HTTPConnection("127.0.0.1", self.port, timeout=1).connect()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        self.url = f"http://127.0.0.1:{self.port}/hooks"

    def lines(self) -> list[tuple[float, str, str]]:
        out = []
        for line in self.path.read_text().splitlines():
            arrived, mid, stamp = line.split(" ")
            out.append((float(arrived), mid, stamp))
        return out

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


def start_delivers(n: int, env: dict, workdir: Path) -> list[subprocess.Popen]:
    command = [sys.executable, "-m", "flask", "--app", "wsgi", "deliver"]
    return [
        subprocess.Popen(
            command,
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=open(workdir / f"deliver-{i}.log", "ab"),  # noqa: SIM115
        )
        for i in range(n)
    ]


def stop_delivers(procs: list[subprocess.Popen]) -> float:
    """SIGTERM them; return the CPU seconds they used."""
    cpu = sum(cpu_of(p.pid) for p in procs)
    for proc in procs:
        proc.send_signal(signal.SIGTERM)
    for proc in procs:
        proc.wait(30)
    return cpu


def drive(base: str, rate: float, duration: float, prefix: str, threads: int = 8) -> dict:
    """POST signed callbacks at `rate` per second for `duration` seconds; return counts."""
    port = int(base.rsplit(":", 1)[1])
    total = int(rate * duration)
    counter = itertools.count()
    statuses: list[int] = []
    start = time.monotonic() + 0.2

    def worker() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        while True:
            i = next(counter)
            if i >= total:
                break
            wait = start + i / rate - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            body = body_for(prefix, i)
            conn.request("POST", "/hooks/aliyun/vod", body=body, headers=vod_headers())
            response = conn.getresponse()
            response.read()
            statuses.append(response.status)
        conn.close()

    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    late = time.monotonic() - (start + duration)
    return {"sent": total, "ok": statuses.count(200), "behind_s": max(late, 0.0)}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def wait_for_lines(sinks: list[Sink], expected: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(len(s.lines()) >= expected for s in sinks):
            return True
        time.sleep(0.2)
    return False


def latency_phase(args, database: str, workdir: Path) -> dict:
    sinks = [Sink(workdir, f"latency-{i}") for i in range(args.endpoints)]
    with open_ledger(database) as ledger:
        for sink in sinks:
            ledger.endpoints.create(url=sink.url)
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECEIVER_")}
    env.update(ledger_env(Path(database)), RECEIVER_DATABASE=database)
    env["RECEIVER_DELIVERY_ALLOW_PRIVATE"] = "1"
    server = Server("wsgi:app", env, workdir / "logs").start()
    delivers = start_delivers(args.processes, env, workdir)
    load_before = os.getloadavg()
    try:
        sent = drive(server.base, args.rate, args.duration, "lat")
        complete = wait_for_lines(sinks, sent["ok"], 60)
    finally:
        cpu = stop_delivers(delivers)
        server.stop()
        load_after = os.getloadavg()
    latencies = []
    for sink in sinks:
        for arrived, _mid, stamp in sink.lines():
            changed = datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
            latencies.append(arrived - changed)
        sink.stop()
    messages = len(latencies)
    return {
        **sent,
        "complete": complete,
        "messages": messages,
        "p50_ms": percentile(latencies, 0.5) * 1000,
        "p99_ms": percentile(latencies, 0.99) * 1000,
        "max_ms": max(latencies) * 1000 if latencies else float("nan"),
        "deliver_cpu_ms_per_message": cpu * 1000 / max(messages, 1),
        "messages_per_s_per_process": messages / args.duration / args.processes,
        "loadavg_before": load_before,
        "loadavg_after": load_after,
    }


def throughput_phase(args, database: str, workdir: Path) -> dict:
    from receiver.providers.aliyun import vod as aliyun_vod

    sink = Sink(workdir, "backlog")
    with open_ledger(database) as ledger:
        ledger.endpoints.create(url=sink.url)
        events = [aliyun_vod.parse(body_for("backlog", i)) for i in range(args.backlog)]
        ledger.notices.record_many(events, source="http", verified=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECEIVER_")}
    env.update(RECEIVER_DATABASE=database, RECEIVER_DELIVERY_ALLOW_PRIVATE="1")
    started = time.monotonic()
    [proc] = start_delivers(1, env, workdir)
    try:
        complete = wait_for_lines([sink], args.backlog, 300)
        elapsed = time.monotonic() - started
    finally:
        cpu = stop_delivers([proc])
        sink.stop()
    return {
        "backlog": args.backlog,
        "complete": complete,
        "seconds": elapsed,
        "messages_per_s": args.backlog / elapsed,
        "cpu_ms_per_message": cpu * 1000 / args.backlog,
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=200, help="notices per second")
    parser.add_argument("--duration", type=float, default=30, help="seconds of load")
    parser.add_argument("--processes", type=int, default=1, help="deliver processes")
    parser.add_argument("--endpoints", type=int, default=1)
    parser.add_argument("--backlog", type=int, default=3000, help="messages for throughput")
    parser.add_argument("--engine", choices=("sqlite", "postgresql"), default="sqlite")
    args = parser.parse_args(argv)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    OUT.mkdir(parents=True, exist_ok=True)
    print(f"machine: {machine()}", file=sys.stderr)
    with tempfile.TemporaryDirectory(prefix="jobledger-deliver-") as tmp:
        workdir = Path(tmp)
        cluster = None
        if args.engine == "postgresql":
            from bench.ingest import PostgresEngine

            cluster = PostgresEngine()
            latency_db, backlog_db = cluster.databases("normal")
        else:
            latency_db, backlog_db = str(workdir / "latency.db"), str(workdir / "backlog.db")
        try:
            for db in (latency_db, backlog_db):
                migrate(db)
            latency = latency_phase(args, latency_db, workdir)
            throughput = throughput_phase(args, backlog_db, workdir)
        finally:
            if cluster is not None:
                cluster.stop()
    print(
        f"Delivery, {args.engine}: {args.rate:g} notices/s for {args.duration:g} s,"
        f" {args.processes} deliver process(es), {args.endpoints} endpoint(s)\n"
    )
    print("| figure | value |\n| --- | ---: |")
    rows = [
        ("notices answered 200", f"{latency['ok']:,} of {latency['sent']:,}"),
        ("messages received by the sinks", f"{latency['messages']:,}"),
        ("latency p50", f"{latency['p50_ms']:.0f} ms"),
        ("latency p99", f"{latency['p99_ms']:.0f} ms"),
        ("latency max", f"{latency['max_ms']:.0f} ms"),
        ("deliver CPU per message", f"{latency['deliver_cpu_ms_per_message']:.2f} ms"),
        (
            "load average before / after (1 min)",
            f"{latency['loadavg_before'][0]:.1f} / {latency['loadavg_after'][0]:.1f}",
        ),
        ("one deliver process draining a backlog", f"{throughput['messages_per_s']:.0f} msg/s"),
        ("CPU per message while draining", f"{throughput['cpu_ms_per_message']:.2f} ms"),
    ]
    for name, value in rows:
        print(f"| {name} | {value} |")
    out = OUT / f"deliver-{stamp}.json"
    out.write_text(
        json.dumps(
            {
                "machine": machine(),
                "args": vars(args),
                "latency": latency,
                "throughput": throughput,
            },
            indent=1,
        )
    )
    print(f"\nraw figures: {out.relative_to(OUT.parent.parent)}", file=sys.stderr)
    ok = latency["complete"] and throughput["complete"]
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
