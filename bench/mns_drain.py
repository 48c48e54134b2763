"""How fast `consume-mns` drains a queue, against a bare receive-and-delete loop.

Both drain the same number of messages from the local fake MNS server (tests/fakes/mns.py,
started as a subprocess, so the server does not share this process's GIL) through the same
official SDK. The bare loop only batch-receives (16) and batch-deletes. jobledger runs the
real `consume-mns --once` command in-process: decode, parse, one ledger transaction per
batch, then the batch delete. Rounds alternate (bare, jobledger, bare, ...) so drift on a
shared machine hits both. Each round starts from a fresh ledger file; its JSON logs are
formatted as in production but written to /dev/null.

    .venv/bin/python bench/mns_drain.py                 # 5000 messages, 3 rounds each
    .venv/bin/python bench/mns_drain.py --messages 20000 --rounds 5
"""

import argparse
import base64
import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mns.account import Account  # noqa: E402
from mns.mns_exception import MNSServerException  # noqa: E402
from mns.queue import Message  # noqa: E402

from receiver import create_app  # noqa: E402
from receiver.providers.aliyun import mns as mns_parser  # noqa: E402
from store import migrate, open_ledger  # noqa: E402

AK, SK, QUEUE = "BenchAK", "BenchSecret", "bench-events"
DEVNULL = open(os.devnull, "w")  # noqa: SIM115 - the logs' sink for the whole run
SAMPLES = [
    "aliyun_mps-IProduction-VideoH2V.json",
    "aliyun_mps-IProduction-AudioMixing.json",
    "aliyun_mps-TextToSpeech.json",
    "aliyun_vod-TranscodeComplete.json",
    "aliyun_vod-FileUploadComplete.json",
    "aliyun_vod-DynamicImageComplete-object.json",
]


def bodies(n: int) -> list[str]:
    """Documented samples with fresh job and media ids (every message makes a new job);
    every other one Base64-encoded, since both encodings reach real queues."""
    docs = [json.loads((ROOT / "tests" / "fixtures" / name).read_text()) for name in SAMPLES]
    out = []
    for i in range(n):
        doc = dict(docs[i % len(docs)])
        for key in ("JobId", "jobId", "VideoId"):
            if key in doc:
                doc[key] = uuid.uuid4().hex
        text = json.dumps(doc)
        out.append(base64.b64encode(text.encode()).decode() if i % 2 else text)
    return out


def fill(queue, n: int) -> None:
    batch = bodies(n)
    for i in range(0, n, 16):
        queue.batch_send_message([Message(b) for b in batch[i : i + 16]])


def bare_loop(queue) -> int:
    """Receive and delete until the queue is empty; return how many messages."""
    n = 0
    while True:
        try:
            messages = queue.batch_receive_message(16, wait_seconds=0)
        except MNSServerException as e:
            if e.type == "MessageNotExist":
                return n
            raise
        queue.batch_delete_message([m.receipt_handle for m in messages])
        n += len(messages)


def jobledger(endpoint: str, workdir: Path, round_no: int, expected: int) -> None:
    """Run `consume-mns --once` in-process on a fresh ledger and check what it recorded."""
    db = workdir / f"ledger-{round_no}.db"
    migrate(db)
    app = create_app(
        {
            "DATABASE": str(db),
            "MNS_ENDPOINT": endpoint,
            "MNS_ACCESS_KEY_ID": AK,
            "MNS_ACCESS_KEY_SECRET": SK,
            "MNS_QUEUES": QUEUE,
        }
    )
    for handler in logging.getLogger("jobledger").handlers:
        handler.setStream(DEVNULL)
    result = app.test_cli_runner().invoke(args=["consume-mns", "--once", "--wait-seconds", "0"])
    if result.exit_code != 0:
        raise SystemExit(f"consume-mns failed: {result.output}{result.exception!r}")
    with open_ledger(db) as led:
        events = led.conn.execute(
            "SELECT count(*) FROM events WHERE duplicate_of IS NULL"
        ).fetchone()
    if events[0] != expected:
        raise SystemExit(f"ledger has {events[0]} events, expected {expected}")


def costs(n: int, workdir: Path) -> tuple[float, float]:
    """Microseconds per message of parsing and of recording (batches of 16), no network."""
    batch = bodies(n)
    start = time.perf_counter()
    events = [mns_parser.parse(b) for b in batch]
    parse_us = (time.perf_counter() - start) / n * 1e6
    migrate(workdir / "costs.db")
    with open_ledger(workdir / "costs.db") as led:
        start = time.perf_counter()
        for i in range(0, n, 16):
            led.notices.record_many(events[i : i + 16], source="mns", verified=True, auth="queue")
        ledger_us = (time.perf_counter() - start) / n * 1e6
    return parse_us, ledger_us


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.fakes.mns",
            "--port",
            "0",
            "--queues",
            QUEUE,
            "--visibility-timeout",
            "120",
            "--access-key-id",
            AK,
            "--access-key-secret",
            SK,
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    endpoint = server.stdout.readline().strip()
    account = Account(endpoint, AK, SK)
    queue = account.get_queue(QUEUE)
    queue.set_encoding(False)
    rows = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for r in range(1, args.rounds + 1):
                fill(queue, args.messages)
                start = time.perf_counter()
                drained = bare_loop(queue)
                bare = drained / (time.perf_counter() - start)
                fill(queue, args.messages)
                start = time.perf_counter()
                jobledger(endpoint, Path(tmp), r, args.messages)
                ours = args.messages / (time.perf_counter() - start)
                rows.append((r, bare, ours))
            parse_us, ledger_us = costs(args.messages, Path(tmp))
    finally:
        account.mns_client.close_connection()
        server.terminate()
        server.wait(10)
    print(
        f"{args.messages} messages per run, batches of 16, {os.cpu_count()} CPUs,"
        f" Python {sys.version.split()[0]}"
    )
    print(f"{'round':>5}  {'bare msg/s':>10}  {'jobledger msg/s':>15}  {'ratio':>5}")
    for r, bare, ours in rows:
        print(f"{r:>5}  {bare:>10.0f}  {ours:>15.0f}  {ours / bare:>5.2f}")
    bare_m = statistics.median(b for _, b, _ in rows)
    ours_m = statistics.median(o for _, _, o in rows)
    print(f"{'median':>6} {bare_m:>10.0f}  {ours_m:>15.0f}  {ours_m / bare_m:>5.2f}")
    sdk_us = 1e6 / bare_m
    print(
        f"per message: bare loop {sdk_us:.0f} us (SDK + fake server), jobledger adds"
        f" parse {parse_us:.0f} us + ledger {ledger_us:.0f} us;"
        f" ratio if nothing else cost time: {sdk_us / (sdk_us + parse_us + ledger_us):.2f}"
    )


if __name__ == "__main__":
    main()
