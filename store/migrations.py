"""Schema of the ledger, as numbered, append-only sqlite-utils migrations.

Run once per deploy (`flask --app wsgi init-db`, the Procfile's release step), never per
request or per worker: several gunicorn workers migrating at boot race each other.
"""

from sqlite_utils import Database, Migrations

migrations = Migrations("ledger")


@migrations(name="0001_enable_wal", transactional=False)
def enable_wal(db: Database) -> None:
    """Let status pages read while callbacks write."""
    db.enable_wal()


@migrations(name="0002_jobs_events_quarantine")
def create_core_tables(db: Database) -> None:
    """Create jobs, events, quarantine and the per-state job counters."""
    db.table("jobs").create(
        {
            "id": str,
            "provider": str,
            "service": str,
            "kind": str,
            "provider_job_id": str,
            "media_id": str,
            "state": str,
            "preprocess": int,
            "error_code": str,
            "error_message": str,
            "outputs": str,
            "origin": str,
            "operation": str,
            "params": str,
            "submitted_at": str,
            "updated_at": str,
            "finished_at": str,
            "last_event_at": str,
        },
        pk="id",
        not_null={"provider", "service", "kind", "state", "origin", "submitted_at", "updated_at"},
        defaults={"outputs": "[]"},
    )
    # One job per provider job id. The partial index also serves `q=<provider job id>`.
    db.execute(
        "CREATE UNIQUE INDEX jobs_provider_job ON jobs (provider_job_id, provider, service) "
        "WHERE provider_job_id IS NOT NULL"
    )
    # Matching a notice without a job id to its video's job, and `q=<media id>`.
    db.execute("CREATE INDEX jobs_media ON jobs (media_id, kind, id) WHERE media_id IS NOT NULL")
    # Keyset pagination (newest first) under any single filter.
    for column in ("state", "provider", "service", "kind"):
        db.execute(f"CREATE INDEX jobs_{column}_id ON jobs ({column}, id)")

    db.table("events").create(
        {
            "id": int,
            "job_id": str,
            "provider": str,
            "service": str,
            "source": str,
            "event_type": str,
            "dedup_key": bytes,
            "verified": int,
            "auth": str,
            "duplicate_of": int,
            "replay_of": int,
            "state_after": str,
            "received_at": str,
            "occurred_at": str,
            "payload": str,
        },
        pk="id",
        not_null={"provider", "service", "source", "verified", "received_at"},
    )
    # Redelivery is found by this index; duplicates themselves are kept, pointing at the original.
    db.execute(
        "CREATE UNIQUE INDEX events_dedup ON events (dedup_key) "
        "WHERE dedup_key IS NOT NULL AND duplicate_of IS NULL"
    )
    db.execute("CREATE INDEX events_job ON events (job_id, id)")

    db.table("quarantine").create(
        {
            "id": int,
            "received_at": str,
            "provider": str,
            "service": str,
            "source": str,
            "reason": str,
            "body": bytes,
            "meta": str,
            "verified": int,
            "auth": str,
            "replayed_at": str,
            "replay_event_id": int,
        },
        pk="id",
    )
    # Kept in the same transaction as every state change, so /api/stats never counts rows.
    db.table("job_counts").create(
        {"provider": str, "service": str, "kind": str, "state": str, "n": int},
        pk=("provider", "service", "kind", "state"),
    )


@migrations(name="0003_polling")
def add_polling(db: Database) -> None:
    """Pace provider polls (reconcile) and find jobs without a final word cheaply."""
    jobs = db.table("jobs")
    jobs.add_column("next_poll_at", str)
    jobs.add_column("poll_count", int, not_null_default=0)
    jobs.add_column("resubmitted_from", str)
    # Only jobs that may still change are in these indexes, so they stay small at 1M jobs.
    open_states = "('submitting', 'submitted', 'processing', 'timed_out', 'running')"
    db.execute(f"CREATE INDEX jobs_open_poll ON jobs (next_poll_at) WHERE state IN {open_states}")
    db.execute(
        "CREATE INDEX jobs_open_age ON jobs (kind, submitted_at)"
        " WHERE state IN ('submitting', 'submitted', 'processing')"
    )


@migrations(name="0004_alerts_and_counters")
def add_alerts(db: Database) -> None:
    """The alert outbox, per-sink deliveries, and notice counters for /metrics."""
    # One alert per job and alerting state, written in the state change's transaction.
    db.table("alerts").create(
        {
            "id": int,
            "job_id": str,
            "state": str,
            "created_at": str,
            "error_code": str,
            "error_message": str,
        },
        pk="id",
        not_null={"job_id", "state", "created_at"},
    )
    db.execute("CREATE UNIQUE INDEX alerts_job_state ON alerts (job_id, state)")
    db.execute("CREATE INDEX alerts_created ON alerts (created_at)")
    # One row per alert and sink once delivery was tried; no row = never tried.
    db.table("alert_deliveries").create(
        {
            "alert_id": int,
            "sink": str,
            "delivered_at": str,
            "attempts": int,
            "next_attempt_at": str,
            "last_error": str,
        },
        pk=("alert_id", "sink"),
        not_null={"attempts"},
    )
    db.execute("CREATE INDEX alert_deliveries_sink ON alert_deliveries (sink, delivered_at)")
    # Kept in the notice's own transaction, so /metrics never counts event rows.
    db.table("notice_counts").create(
        {"source": str, "provider": str, "event_type": str, "outcome": str, "n": int},
        pk=("source", "provider", "event_type", "outcome"),
    )
    db.execute(
        "CREATE INDEX jobs_unfinished ON jobs (submitted_at)"
        " WHERE state IN ('submitting', 'submitted', 'processing', 'timed_out')"
    )


@migrations(name="0005_retention")
def add_retention(db: Database) -> None:
    """Remember how far raw payloads have been pruned, so each pass starts there."""
    db.table("ledger_meta").create({"key": str, "value": str}, pk="key")


@migrations(name="0006_quarantine_status")
def add_quarantine_status(db: Database) -> None:
    """Give each quarantined body a status (waiting, replayed, discarded) and who discarded it.

    Rows kept before this step get their status from `replayed_at`. The indexes serve the
    newest-first listing under a status or provider filter, and time ranges.
    """
    db.execute("ALTER TABLE quarantine ADD COLUMN status TEXT NOT NULL DEFAULT 'waiting'")
    db.execute("ALTER TABLE quarantine ADD COLUMN discarded_at TEXT")
    db.execute("ALTER TABLE quarantine ADD COLUMN discarded_by TEXT")
    db.execute("UPDATE quarantine SET status = 'replayed' WHERE replayed_at IS NOT NULL")
    db.execute("CREATE INDEX quarantine_status_id ON quarantine (status, id)")
    db.execute("CREATE INDEX quarantine_provider_id ON quarantine (provider, id)")
    db.execute("CREATE INDEX quarantine_received ON quarantine (received_at)")


@migrations(name="0007_console_health")
def add_console_health(db: Database) -> None:
    """Per-minute counts of rejected hook deliveries, and an index for each feed's last notice."""
    db.table("hook_rejections").create(
        {"minute": str, "provider": str, "reason": str, "n": int},
        pk=("minute", "provider", "reason"),
        not_null={"n"},
    )
    # MAX(received_at) and the last hour's count per feed, read from the index alone.
    db.execute("CREATE INDEX events_feed ON events (source, provider, service, received_at)")


@migrations(name="0008_shared_work")
def add_shared_work(db: Database) -> None:
    """Counter shards, alert delivery claims and shared call pacing (the same schema as on
    PostgreSQL, where several hosts write at once; on SQLite every row has shard 0)."""
    for table, key in (
        ("job_counts", "provider, service, kind, state"),
        ("notice_counts", "source, provider, event_type, outcome"),
    ):
        columns = ", ".join(f"[{c}] TEXT" for c in key.split(", "))
        db.execute(
            f"CREATE TABLE {table}_sharded ({columns}, shard INTEGER NOT NULL DEFAULT 0,"
            f" n INTEGER NOT NULL, PRIMARY KEY ({key}, shard))"
        )
        db.execute(f"INSERT INTO {table}_sharded ({key}, shard, n) SELECT {key}, 0, n FROM {table}")
        db.execute(f"DROP TABLE {table}")
        db.execute(f"ALTER TABLE {table}_sharded RENAME TO {table}")
    db.table("alert_deliveries").add_column("claimed_until", str)
    db.execute(
        "CREATE INDEX jobs_resubmitted ON jobs (resubmitted_from)"
        " WHERE resubmitted_from IS NOT NULL"
    )
    db.table("call_slots").create({"family": str, "next_at": float}, pk="family")


@migrations(name="0009_alert_subjects")
def add_alert_subjects(db: Database) -> None:
    """Alerts about something other than one job (a provider's failure rate, an endpoint).

    Such an alert has no job: `subject` names what it is about, once (a unique key, so the
    same news is queued once however many processes notice it), `summary` is its one line
    for people and `detail` a JSON object for programs. `kind` is `job` for job alerts.
    """
    db.table("alerts").transform(not_null={"job_id": False})
    db.execute("ALTER TABLE alerts ADD COLUMN kind TEXT NOT NULL DEFAULT 'job'")
    db.table("alerts").add_column("subject", str)
    db.table("alerts").add_column("summary", str)
    db.table("alerts").add_column("detail", str)
    db.execute("CREATE UNIQUE INDEX alerts_subject ON alerts (subject) WHERE subject IS NOT NULL")


@migrations(name="0010_outbound_events")
def add_outbound_events(db: Database) -> None:
    """Outbound events: the message outbox, endpoints, deliveries and their attempts.

    A job's every state change writes one `messages` row in its own transaction (the
    outbox); the `deliver` process fans each message out to the matching endpoints as
    `deliveries` and records every attempt. `jobs.metadata` is the application's own JSON
    object given at submission.
    """
    db.table("jobs").add_column("metadata", str)
    db.execute(
        "CREATE TABLE messages (id INTEGER PRIMARY KEY, job_id TEXT NOT NULL,"
        " sequence INTEGER NOT NULL, state TEXT NOT NULL, previous_state TEXT,"
        " created_at TEXT NOT NULL, data TEXT NOT NULL, fanned INTEGER NOT NULL DEFAULT 0)"
    )
    # The sequence of a job's next change is read from here, in its own transaction.
    db.execute("CREATE UNIQUE INDEX messages_job ON messages (job_id, sequence)")
    # What the deliver process has not fanned out yet: small however many were sent.
    db.execute("CREATE INDEX messages_unfanned ON messages (id) WHERE fanned = 0")
    db.execute(
        "CREATE TABLE endpoints (id TEXT PRIMARY KEY, url TEXT NOT NULL, description TEXT,"
        " filter TEXT NOT NULL DEFAULT '{}', secret TEXT NOT NULL, previous_secret TEXT,"
        " previous_secret_until TEXT, enabled INTEGER NOT NULL DEFAULT 1, disabled_reason TEXT,"
        " created_at TEXT NOT NULL, updated_at TEXT NOT NULL, message_mark INTEGER NOT NULL,"
        " last_success_at TEXT, last_failure_at TEXT, failing_since TEXT)"
    )
    db.execute(
        "CREATE TABLE deliveries (id INTEGER PRIMARY KEY, endpoint_id TEXT NOT NULL,"
        " message_id INTEGER NOT NULL, job_id TEXT NOT NULL, sequence INTEGER NOT NULL,"
        " status TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,"
        " series INTEGER NOT NULL DEFAULT 0, created_at TEXT NOT NULL,"
        " next_attempt_at TEXT, claimed_until TEXT, claim TEXT, last_attempt_at TEXT)"
    )
    db.execute("CREATE UNIQUE INDEX deliveries_message ON deliveries (endpoint_id, message_id)")
    db.execute("CREATE INDEX deliveries_endpoint ON deliveries (endpoint_id, status, id)")
    # Due work, and the per-job order check, read only pending rows. Every pending row has
    # a next_attempt_at; saying so keeps the order check (which names none) on
    # deliveries_job, where it is one probe, whatever the planner's statistics.
    db.execute(
        "CREATE INDEX deliveries_due ON deliveries (endpoint_id, next_attempt_at)"
        " WHERE status = 'pending' AND next_attempt_at IS NOT NULL"
    )
    db.execute(
        "CREATE INDEX deliveries_job ON deliveries (endpoint_id, job_id, sequence)"
        " WHERE status = 'pending'"
    )
    db.execute(
        "CREATE INDEX deliveries_pending_age ON deliveries (created_at) WHERE status = 'pending'"
    )
    db.execute(
        "CREATE TABLE delivery_attempts (id INTEGER PRIMARY KEY, delivery_id INTEGER NOT NULL,"
        " at TEXT NOT NULL, status_code INTEGER, error TEXT, duration_ms INTEGER NOT NULL,"
        " excerpt TEXT)"
    )
    db.execute("CREATE INDEX delivery_attempts_delivery ON delivery_attempts (delivery_id, id)")
    # Attempts by endpoint, outcome and duration bucket, kept in each attempt's transaction
    # so /metrics is exact across every deliver process.
    db.execute(
        "CREATE TABLE delivery_counts (endpoint_id TEXT NOT NULL, outcome TEXT NOT NULL,"
        " bucket INTEGER NOT NULL, shard INTEGER NOT NULL DEFAULT 0, n INTEGER NOT NULL,"
        " ms INTEGER NOT NULL, PRIMARY KEY (endpoint_id, outcome, bucket, shard))"
    )


_SETTLED = "('succeeded', 'partial', 'failed', 'submit_failed', 'timed_out')"


@migrations(name="0011_provider_health")
def add_provider_health(db: Database) -> None:
    """Durations and settlements of jobs, and what provider health is computed from.

    `settled_at` is when the ledger first learned a job's outcome (its final state or its
    deadline passing), by the ledger's own clock; `duration_seconds` is written with
    `finished_at`; `started_at` is a provider's own start time for an external job.
    `health_hours` holds per-hour tallies that the background pass adds settled jobs to
    once, `health_totals` the cumulative counters /metrics exposes, and `provider_health`
    the latest snapshot the API and the dashboard read. Jobs settled before this step get
    their settlement time from `updated_at`.
    """
    jobs = db.table("jobs")
    for column, kind in (("started_at", str), ("settled_at", str), ("duration_seconds", float)):
        jobs.add_column(column, kind)
    db.execute(f"UPDATE jobs SET settled_at = updated_at WHERE state IN {_SETTLED}")
    db.execute(
        "UPDATE jobs SET duration_seconds ="
        " ROUND((julianday(finished_at) - julianday(submitted_at)) * 86400, 3)"
        " WHERE finished_at IS NOT NULL AND (finished_at > submitted_at"
        " OR (finished_at = submitted_at AND origin != 'external'))"
    )
    db.execute("CREATE INDEX jobs_settled ON jobs (settled_at) WHERE settled_at IS NOT NULL")
    db.table("health_hours").create(
        {
            "hour": str,
            "provider": str,
            "service": str,
            "kind": str,
            "finished": int,
            "failed": int,
            "durations": str,
        },
        pk=("hour", "provider", "service", "kind"),
        not_null={"finished", "failed"},
    )
    db.table("health_totals").create(
        {"provider": str, "service": str, "kind": str, "name": str, "n": float},
        pk=("provider", "service", "kind", "name"),
        not_null={"n"},
    )
    db.table("provider_health").create(
        {
            "provider": str,
            "service": str,
            "kind": str,
            "window_finished": int,
            "window_failed": int,
            "baseline_finished": int,
            "baseline_failed": int,
            "p50": float,
            "p95": float,
            "p99": float,
            "duration_count": int,
            "slow_jobs": int,
            "anomaly": int,
            "anomaly_reason": str,
            "anomaly_since": str,
            "anomaly_seen_at": str,
            "generated_at": str,
        },
        pk=("provider", "service", "kind"),
    )
