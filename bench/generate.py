"""Build a ledger of N jobs and 5N events directly in SQL, for bench/scale.py.

    .venv/bin/python -m bench.generate                      # 1,000,000 jobs, 5,000,000 events
    .venv/bin/python -m bench.generate --jobs 10000 --out bench/out/ledger-10k.db
    .venv/bin/python -m bench.generate --jobs 10000 --database postgresql://...   # see below

The file is created with `store.migrate` (so the schema is exactly the service's), then
filled with executemany() in transactions of 50,000 jobs, with `synchronous=OFF` and the
secondary indexes dropped during the load and recreated afterwards from their own SQL
(generation only: the service never runs like that). The data is shaped like a year of a
busy platform: Alibaba VOD transcodes, preprocessing, dynamic images, snapshots and uploads,
MPS smart production, Live edge transcoding, Tencent task flows and uploads; mostly settled
jobs, open ones among the newest; submission request/response events for jobs the ledger
submitted; payloads built from the documented samples (tests/fixtures); about 4 % of
deliveries are duplicates. `job_counts` is computed from the rows written, so /api/stats
agrees with COUNT(*).

With `--database postgresql://...` the SQLite file is built as above (or reused with
`--reuse`) and then copied row for row into that PostgreSQL database by bench/pg_load.py,
so both engines hold the same jobs for the same seed.
"""

import argparse
import json
import random
import sqlite3
import sys
import time
from collections import Counter
from pathlib import Path

from bench.common import OUT, ROOT
from store import migrate

FIXTURES = ROOT / "tests" / "fixtures"
CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
CHUNK = 50_000
DAY_MS = 86_400_000
SPAN_DAYS = 365
FINAL = {"succeeded", "partial", "failed", "submit_failed"}
OPEN_POLL = {"submitting", "submitted", "processing", "timed_out", "running"}

# (provider, service, kind, origin, has a provider job id, share of jobs)
KINDS = [
    ("aliyun", "vod", "transcode", "external", False, 30),
    ("aliyun", "vod", "preprocess", "submitted", True, 8),
    ("aliyun", "vod", "dynamic_image", "submitted", True, 7),
    ("aliyun", "vod", "snapshot", "external", True, 8),
    ("aliyun", "vod", "upload", "external", False, 12),
    ("aliyun", "mps", "iproduction", "submitted", True, 10),
    ("aliyun", "live", "edge_transcode", "submitted", True, 1),
    ("tencent", "vod", "procedure", "submitted", True, 17),
    ("tencent", "vod", "upload", "external", False, 7),
]
OPERATIONS = {
    "preprocess": "aliyun.vod.SubmitPreprocessJobs",
    "dynamic_image": "aliyun.vod.SubmitDynamicImageJob",
    "iproduction": "aliyun.mps.SubmitIProductionJob",
    "edge_transcode": "aliyun.live.StartEdgeTranscodeJob",
    "procedure": "tencent.vod.ProcessMediaByProcedure",
}
SETTLED = [("succeeded", 900), ("failed", 45), ("partial", 15), ("timed_out", 10)]
RECENT = [("processing", 55), ("submitted", 25), ("succeeded", 15), ("failed", 5)]


def encode(value: int) -> str:
    chars = []
    for _ in range(26):
        chars.append(CROCKFORD[value & 31])
        value >>= 5
    return "".join(reversed(chars))


def iso(ms: int) -> str:
    seconds, millis = divmod(ms, 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{millis:03d}Z"


HOLE = "@@HOLE@@"


def template(name: str, *holes: str) -> tuple[list[str], list[str]]:
    """Compact a fixture to one line and cut it at the named top-level keys' values."""
    doc = json.loads((FIXTURES / name).read_text())
    order = [k for k in doc if k in holes]
    doc = {k: (HOLE if k in holes else v) for k, v in doc.items()}
    text = json.dumps(doc, ensure_ascii=False, separators=(",", ":"))
    return text.split(f'"{HOLE}"'), order


def fill(tpl: tuple[list[str], list[str]], **values) -> str:
    parts, order = tpl
    out = [parts[0]]
    for key, part in zip(order, parts[1:], strict=True):
        out.append(json.dumps(values[key], separators=(",", ":")))
        out.append(part)
    return "".join(out)


PAYLOADS = {
    "StreamTranscodeComplete": template(
        "aliyun_vod-StreamTranscodeComplete.json", "VideoId", "EventTime", "Definition"
    ),
    "TranscodeComplete": template("aliyun_vod-TranscodeComplete.json", "VideoId", "EventTime"),
    "DynamicImageComplete": template(
        "aliyun_vod-DynamicImageComplete-object.json", "VideoId", "EventTime"
    ),
    "SnapshotComplete": template("aliyun_vod-SnapshotComplete.json", "VideoId", "EventTime"),
    "FileUploadComplete": template("aliyun_vod-FileUploadComplete.json", "VideoId", "EventTime"),
    "IProduction": template("aliyun_mps-IProduction-VideoH2V.json", "JobId", "Message"),
    "NewFileUpload": template("tencent_vod-v2-NewFileUpload.json", "data"),
}
TENCENT_V3 = json.loads((FIXTURES / "tencent_vod-v3-ProcedureStateChanged.json").read_text())


def notice_types(kind: str, provider: str) -> tuple[str, str]:
    """(progress notice, final notice) for a kind."""
    return {
        "transcode": ("StreamTranscodeComplete", "TranscodeComplete"),
        "preprocess": ("StreamTranscodeComplete", "TranscodeComplete"),
        "dynamic_image": ("DynamicImageComplete", "DynamicImageComplete"),
        "snapshot": ("SnapshotComplete", "SnapshotComplete"),
        "upload": ("FileUploadComplete", "FileUploadComplete")
        if provider == "aliyun"
        else ("NewFileUpload", "NewFileUpload"),
        "iproduction": ("IProduction", "IProduction"),
        "edge_transcode": ("poll", "poll"),
        "procedure": ("ProcedureStateChanged", "ProcedureStateChanged"),
    }[kind]


def payload(event_type: str, media: str, job: str, at: str, n: int) -> str:
    """A body like the provider's for this job; `n` < 0 for the final notice."""
    if event_type == "ProcedureStateChanged":
        task = dict(TENCENT_V3["ProcedureStateChangeEvent"], TaskId=job, FileId=media)
        task["Status"] = "FINISH" if n < 0 else "PROCESSING"
        return json.dumps(dict(TENCENT_V3, ProcedureStateChangeEvent=task), separators=(",", ":"))
    if event_type == "poll":
        return json.dumps({"JobId": job, "Status": "running", "ClusterId": "cluster-1"})
    if event_type == "NewFileUpload":
        data = {"fileId": media, "fileUrl": f"http://1251000000.vod2.myqcloud.com/{media}.mp4"}
        return fill(PAYLOADS[event_type], data=data)
    if event_type == "IProduction":
        return fill(PAYLOADS[event_type], JobId=job, Message=f"success {n}")
    return fill(PAYLOADS[event_type], VideoId=media, EventTime=at, Definition=f"D{n}")


def outputs_for(kind: str, state: str, media: str) -> str:
    if state not in ("succeeded", "partial"):
        return "[]"
    if kind in ("transcode", "preprocess"):
        return json.dumps(
            [
                {
                    "Definition": d,
                    "Format": "mp4",
                    "Status": "success",
                    "Size": 1815321,
                    "url": f"http://vod.example.com/{media}/{d}.mp4",
                }
                for d in ("LD", "SD")
            ]
        )
    if kind == "procedure":
        return json.dumps(
            [
                {
                    "type": "Transcode",
                    "status": "SUCCESS",
                    "url": f"http://x.vod2.myqcloud.com/{media}/v.f20.mp4",
                }
            ]
        )
    return json.dumps([{"url": f"http://media.example.com/{media}/out"}])


def generate(path: Path, jobs: int, events_per_job: int = 5, seed: int = 6) -> dict:
    started = time.monotonic()
    rng = random.Random(seed)
    if path.exists():
        path.unlink()
    for suffix in ("-wal", "-shm"):
        Path(str(path) + suffix).unlink(missing_ok=True)
    migrate(path)
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA synchronous=OFF")
    conn.execute("PRAGMA cache_size=-262144")  # 256 MiB, generation only
    indexes = conn.execute(
        "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL"
        " AND tbl_name IN ('jobs', 'events')"
    ).fetchall()
    for name, _ in indexes:
        conn.execute(f"DROP INDEX {name}")
    job_cols = [r[1] for r in conn.execute("PRAGMA table_info(jobs)")]
    wanted = [
        "id", "provider", "service", "kind", "provider_job_id", "media_id", "state", "preprocess",
        "error_code", "error_message", "outputs", "origin", "operation", "params", "submitted_at",
        "updated_at", "finished_at", "last_event_at", "next_poll_at", "poll_count",
        "settled_at", "duration_seconds",
    ]  # fmt: skip
    wanted = [c for c in wanted if c in job_cols]
    job_sql = f"INSERT INTO jobs ({', '.join(wanted)}) VALUES ({', '.join('?' * len(wanted))})"
    event_sql = (
        "INSERT INTO events (id, job_id, provider, service, source, event_type, dedup_key,"
        " verified, auth, duplicate_of, replay_of, state_after, received_at, occurred_at, payload)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    )
    weights = [k[-1] for k in KINDS]
    end_ms = int(time.time() * 1000) - 3_600_000
    start_ms = end_ms - SPAN_DAYS * DAY_MS
    step = (end_ms - start_ms) / max(jobs, 1)
    counts = Counter()
    pools: dict[tuple[str, str], list[str]] = {}
    next_event_id = 1
    payload_bytes = 0
    total_events = 0
    for chunk_start in range(0, jobs, CHUNK):
        n = min(CHUNK, jobs - chunk_start)
        job_rows, event_rows = [], []
        for i in range(chunk_start, chunk_start + n):
            ms = int(start_ms + i * step + rng.random() * step)
            job_id = encode((ms << 80) | rng.getrandbits(79))
            provider, service, kind, origin, has_pjid, _ = rng.choices(KINDS, weights)[0]
            if rng.random() < 0.03 and origin == "external":
                origin = "submitted"
            # Several jobs per video: reuse a recent media id two times out of three.
            media_pool = pools.setdefault((provider, service), [])
            if media_pool and rng.random() < 0.66:
                media = media_pool[-1 - int(rng.random() * min(len(media_pool), 50))]
            elif provider == "tencent":
                media = str(rng.getrandbits(62))
            elif service == "mps":
                media = f"oss://media-in/{rng.getrandbits(64):016x}.mp4"
            else:
                media = f"{rng.getrandbits(128):032x}"
            media_pool.append(media)
            if len(media_pool) > 1000:
                del media_pool[:500]
            pjid = None
            if has_pjid:
                pjid = (
                    f"1256768367-Procedure-{rng.getrandbits(64):016x}t1"
                    if provider == "tencent"
                    else f"{rng.getrandbits(128):032x}"
                )
            recent = i >= jobs * 0.995
            if kind == "edge_transcode":
                state = rng.choice(("running", "stopped", "stopped"))
            else:
                table = RECENT if recent else SETTLED
                state = rng.choices([s for s, _ in table], [w for _, w in table])[0]
                if origin == "submitted" and not recent and rng.random() < 0.005:
                    state, pjid = "submit_failed", None
            # 5 events on average per job, exactly: pair each job's deviation with the next's.
            d = (i // 2 * 7919) % 4
            k = events_per_job + (d if i % 2 == 0 else -d)
            k = max(k, 1)
            operation = OPERATIONS.get(kind) if origin == "submitted" else None
            params = json.dumps({"VideoId": media}) if operation else None
            progress, final = notice_types(kind, provider)
            t = ms
            last_event = None
            error = (None, None)
            if state in ("failed", "partial"):
                error = ("InvalidVideo.NoStreams", "the source has no video stream")
            if state == "submit_failed":
                error = ("Forbidden.RAMUserNotAuthorized", "not authorized")
            previous_event = None
            previous_key = None
            for e in range(k):
                t += 1000 + int(rng.random() * 120_000)
                at = iso(t)
                local = operation is not None and e < 2 and k > 2
                if local:
                    etype = f"{operation}:{'request' if e == 0 else 'response'}"
                    body = (
                        params
                        if e == 0
                        else json.dumps({"RequestId": f"{rng.getrandbits(64):x}", "JobId": pjid})
                    )
                    source, auth, key, dup, after = (
                        "submit",
                        "local",
                        None,
                        None,
                        ("submitting" if e == 0 else "submitted"),
                    )
                else:
                    is_final = e == k - 1
                    etype = final if is_final else progress
                    # a redelivery of the previous notice now and then
                    if previous_key is not None and rng.random() < 0.04:
                        key, dup = previous_key, previous_event
                        body = event_rows[-1][14]
                    else:
                        key, dup = rng.getrandbits(128).to_bytes(16, "big"), None
                        body = payload(etype, media, pjid or job_id, at, -1 if is_final else e)
                        previous_key, previous_event = key, next_event_id
                    source = "pull" if provider == "tencent" and rng.random() < 0.3 else "http"
                    if etype == "poll":
                        source, key, dup = "poll", None, None
                    auth = "signature"
                    after = state if is_final else "processing"
                    last_event = at
                payload_bytes += len(body)
                event_rows.append(
                    (
                        next_event_id,
                        job_id,
                        provider,
                        service,
                        source,
                        etype,
                        key,
                        1,
                        auth,
                        dup,
                        None,
                        after,
                        at,
                        at,
                        body,
                    )  # fmt: skip
                )
                next_event_id += 1
            total_events += k
            finished = iso(t) if state in FINAL else None
            settled = state in FINAL or state == "timed_out"
            row = {
                "id": job_id,
                "provider": provider,
                "service": service,
                "kind": kind,
                "provider_job_id": pjid,
                "media_id": media,
                "state": state,
                "preprocess": 1 if kind == "preprocess" else None,
                "error_code": error[0],
                "error_message": error[1],
                "outputs": outputs_for(kind, state, media),
                "origin": origin,
                "operation": operation,
                "params": params,
                "submitted_at": iso(ms),
                "updated_at": iso(t),
                "finished_at": finished,
                "last_event_at": last_event,
                "next_poll_at": iso(t + 300_000) if state in OPEN_POLL else None,
                "poll_count": 0,
                "settled_at": iso(t) if settled else None,
                "duration_seconds": round((t - ms) / 1000, 3) if finished else None,
            }
            job_rows.append(tuple(row[c] for c in wanted))
            counts[(provider, service, kind, state)] += 1
        # Ids are unique per provider job id; a rare collision of random ids is impossible
        # at 128 bits, so no check is needed here.
        conn.execute("BEGIN")
        conn.executemany(job_sql, job_rows)
        conn.executemany(event_sql, event_rows)
        conn.execute("COMMIT")
        done = chunk_start + n
        if done % 200_000 == 0 or done == jobs:
            print(
                f"  {done:,} jobs, {total_events:,} events, {time.monotonic() - started:.0f} s",
                file=sys.stderr,
                flush=True,
            )
    conn.execute("BEGIN")
    conn.execute("DELETE FROM job_counts")
    conn.executemany(
        "INSERT INTO job_counts (provider, service, kind, state, n) VALUES (?, ?, ?, ?, ?)",
        [(*key, n) for key, n in counts.items()],
    )
    conn.execute("COMMIT")
    index_started = time.monotonic()
    for _, sql in indexes:
        conn.execute(sql)
    index_s = time.monotonic() - index_started
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    elapsed = time.monotonic() - started
    return {
        "path": str(path),
        "jobs": jobs,
        "events": total_events,
        "payload_bytes": payload_bytes,
        "file_bytes": path.stat().st_size,
        "seconds": round(elapsed, 1),
        "index_seconds": round(index_s, 1),
    }


def default_path(jobs: int) -> Path:
    return OUT / f"ledger-{jobs}.db"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=1_000_000)
    parser.add_argument("--events-per-job", type=int, default=5)
    parser.add_argument("--out", type=Path, help="default: bench/out/ledger-<jobs>.db")
    parser.add_argument("--seed", type=int, default=6)
    parser.add_argument("--database", help="postgresql://... URL to load the generated ledger into")
    parser.add_argument(
        "--reuse", action="store_true", help="with --database: load an existing SQLite file"
    )
    args = parser.parse_args(argv)
    path = args.out or default_path(args.jobs)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not (args.reuse and args.database and path.exists()):
        info = generate(path, args.jobs, args.events_per_job, args.seed)
        print(json.dumps(info))
    if args.database:
        from bench.pg_load import load

        print(json.dumps(load(path, args.database)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
