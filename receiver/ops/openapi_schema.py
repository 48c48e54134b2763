"""Pieces of the OpenAPI document: parameter helpers and the schemas of the records.

`receiver.ops.openapi` assembles them into the document served at /api/openapi.json.
"""

NULLABLE_STR = {"type": "string", "nullable": True}
ERROR = {
    "description": "error",
    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
}


def list_param(name: str, description: str) -> dict:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "description": description,
        "style": "form",
        "explode": True,
        "schema": {"type": "array", "items": {"type": "string"}},
    }


def query(name: str, description: str, schema: dict) -> dict:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "description": description,
        "schema": schema,
    }


def json_body(schema: dict, description: str = "success") -> dict:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


JOB = {
    "type": "object",
    "required": [
        "id",
        "provider",
        "service",
        "kind",
        "provider_job_id",
        "media_id",
        "state",
        "preprocess",
        "error_code",
        "error_message",
        "outputs",
        "origin",
        "submitted_at",
        "updated_at",
        "finished_at",
        "duration_seconds",
        "slow",
        "metadata",
    ],
    "properties": {
        "id": {"type": "string", "description": "ledger id, sortable by creation"},
        "provider": {"type": "string", "enum": ["aliyun", "tencent"]},
        "service": {"type": "string", "enum": ["vod", "mps", "live"]},
        "kind": {"type": "string"},
        "provider_job_id": NULLABLE_STR,
        "media_id": NULLABLE_STR,
        "state": {
            "type": "string",
            "enum": [
                "submitting",
                "submitted",
                "processing",
                "running",
                "stopped",
                "timed_out",
                "succeeded",
                "partial",
                "failed",
                "submit_failed",
            ],
        },
        "preprocess": {"type": "boolean", "nullable": True},
        "error_code": NULLABLE_STR,
        "error_message": NULLABLE_STR,
        "outputs": {"type": "array", "items": {"type": "object"}},
        "origin": {"type": "string", "enum": ["submitted", "external"]},
        "operation": NULLABLE_STR,
        "submitted_at": {"type": "string"},
        "updated_at": {"type": "string"},
        "finished_at": NULLABLE_STR,
        "metadata": {"type": "object", "description": "the application's own, {} if none"},
        "duration_seconds": {
            "type": "number",
            "nullable": True,
            "description": "finished_at minus the start; null while it runs, or when the"
            " finish reads earlier than the start",
        },
        "slow": {
            "type": "boolean",
            "description": "running past its kind's p95 (from at least 20 finished jobs)",
        },
    },
}
_COUNTS = {
    "type": "object",
    "required": ["finished", "failed", "failure_rate"],
    "properties": {
        "finished": {"type": "integer"},
        "failed": {"type": "integer"},
        "failure_rate": {"type": "number", "nullable": True},
    },
}
_PERCENTILE = {"type": "number", "nullable": True}
HEALTH_GROUP = {
    "type": "object",
    "required": [
        "provider",
        "service",
        "kind",
        "window",
        "baseline",
        "anomaly",
        "anomaly_reason",
        "duration_seconds",
    ],
    "properties": {
        "provider": {"type": "string"},
        "service": {"type": "string"},
        "kind": {"type": "string"},
        "window": _COUNTS,
        "baseline": _COUNTS,
        "anomaly": {"type": "boolean"},
        "anomaly_reason": NULLABLE_STR,
        "anomaly_since": NULLABLE_STR,
        "slow_jobs": {"type": "integer", "description": "its slow jobs, as of the last pass"},
        "duration_seconds": {
            "type": "object",
            "required": ["p50", "p95", "p99", "count"],
            "properties": {
                "p50": _PERCENTILE,
                "p95": _PERCENTILE,
                "p99": _PERCENTILE,
                "count": {"type": "integer"},
            },
        },
    },
}
HEALTH = {
    "type": "object",
    "required": ["groups", "generated_at"],
    "properties": {
        "groups": {"type": "array", "items": HEALTH_GROUP},
        "generated_at": NULLABLE_STR,
        "window_seconds": {"type": "integer"},
        "baseline_seconds": {"type": "integer"},
    },
}
EVENT = {
    "type": "object",
    "required": [
        "id",
        "received_at",
        "source",
        "event_type",
        "verified",
        "duplicate_of",
        "state_after",
        "payload",
    ],
    "properties": {
        "id": {"type": "integer"},
        "job_id": NULLABLE_STR,
        "provider": {"type": "string"},
        "service": {"type": "string"},
        "source": {"type": "string", "enum": ["http", "mns", "pull", "poll", "submit"]},
        "event_type": NULLABLE_STR,
        "verified": {"type": "boolean"},
        "auth": NULLABLE_STR,
        "duplicate_of": {"type": "integer", "nullable": True},
        "replay_of": {"type": "integer", "nullable": True},
        "state_after": NULLABLE_STR,
        "received_at": {"type": "string"},
        "occurred_at": NULLABLE_STR,
        "payload": {"type": "string", "nullable": True, "description": "the body as received"},
    },
}
COUNTS = {"type": "object", "additionalProperties": {"type": "integer"}}
NULLABLE_INT = {"type": "integer", "nullable": True}
ROW_ID = {"type": "integer", "minimum": 1, "maximum": 9223372036854775807}
PROVIDERS = ["aliyun", "tencent"]
SOURCES = ["http", "mns", "pull"]
STATUSES = ["waiting", "replayed", "discarded"]
QUARANTINE_ITEM = {
    "type": "object",
    "required": [
        "id",
        "received_at",
        "provider",
        "service",
        "source",
        "reason",
        "verified",
        "status",
        "size",
    ],
    "properties": {
        "id": {"type": "integer"},
        "received_at": {"type": "string"},
        "provider": {"type": "string", "enum": PROVIDERS},
        "service": {"type": "string", "description": "vod, mps, or mns (not yet told apart)"},
        "source": {"type": "string", "enum": SOURCES},
        "reason": NULLABLE_STR,
        "verified": {"type": "boolean"},
        "auth": NULLABLE_STR,
        "status": {"type": "string", "enum": STATUSES},
        "size": {**NULLABLE_INT, "description": "bytes; null once pruned after a replay"},
        "replayed_at": NULLABLE_STR,
        "replay_event_id": NULLABLE_INT,
        "job_id": NULLABLE_STR,
        "discarded_at": NULLABLE_STR,
        "discarded_by": {**NULLABLE_STR, "description": "token, basic:<user> or loopback"},
        "meta": {"type": "object", "description": "delivery details (content type, queue ids)"},
    },
}
QUARANTINE_DETAIL = {
    "allOf": [
        {"$ref": "#/components/schemas/QuarantineItem"},
        {
            "type": "object",
            "required": ["payload", "payload_encoding"],
            "properties": {
                "payload": {**NULLABLE_STR, "description": "the body as received"},
                "payload_encoding": {"type": "string", "enum": ["text", "base64"]},
            },
        },
    ]
}
REPLAY_ITEM = {
    "type": "object",
    "required": ["id", "ok"],
    "properties": {
        "target": {"type": "string", "enum": ["quarantine", "events"]},
        "id": {"type": "integer", "description": "the quarantined body or the stored event"},
        "ok": {"type": "boolean"},
        "status": {"type": "string", "enum": STATUSES},
        "event_id": {**NULLABLE_INT, "description": "the event the replay recorded"},
        "job_id": NULLABLE_STR,
        "state": NULLABLE_STR,
        "previous_state": NULLABLE_STR,
        "changed": {"type": "boolean", "description": "a job was created or its state moved"},
        "duplicate": {"type": "boolean"},
        "error": NULLABLE_STR,
    },
}
_STRINGS = {"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]}
REPLAY_FILTER = {
    "type": "object",
    "properties": {
        "target": {"type": "string", "enum": ["quarantine", "events"], "default": "quarantine"},
        "provider": _STRINGS,
        "service": _STRINGS,
        "source": _STRINGS,
        "event_type": {**_STRINGS, "description": "stored events only"},
        "since": {"type": "string", "description": "received at or after (ISO 8601)"},
        "until": {"type": "string", "description": "received at or before (ISO 8601)"},
        "ids": {"type": "array", "items": ROW_ID, "description": "instead of filters"},
        "all": {"type": "boolean", "description": "every stored event (target events)"},
        "after": {"type": "integer", "minimum": 0, "description": "from `next`"},
        "through": {"type": "integer", "minimum": 0, "description": "from `next`"},
        "limit": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 1000},
        "dry_run": {"type": "boolean", "description": "only count what matches"},
    },
}
REPLAY_TOTALS = {
    "type": "object",
    "required": ["ok", "dry_run", "matched"],
    "properties": {
        "ok": {"type": "boolean"},
        "dry_run": {"type": "boolean"},
        "target": {"type": "string", "enum": ["quarantine", "events"]},
        "matched": {"type": "integer"},
        "replayed": {"type": "integer"},
        "changed": {"type": "integer"},
        "unchanged": {"type": "integer"},
        "failed": {"type": "integer"},
        "items": {"type": "array", "items": {"$ref": "#/components/schemas/ReplayItem"}},
        "next": {
            "type": "object",
            "nullable": True,
            "description": "POST this filter again to continue; null when done",
        },
    },
}
REFUSAL = {
    "type": "object",
    "required": ["ok", "error", "status", "job"],
    "properties": {
        "ok": {"type": "boolean", "enum": [False]},
        "error": {"type": "string"},
        "status": {"type": "integer"},
        "job": {"$ref": "#/components/schemas/Job"},
    },
}
ERROR_SCHEMA = {
    "type": "object",
    "required": ["ok", "error", "status"],
    "properties": {
        "ok": {"type": "boolean", "enum": [False]},
        "error": {"type": "string"},
        "status": {"type": "integer"},
        "parameter": {"type": "string", "description": "the parameter refused (a 400)"},
    },
}
SCHEMAS = {
    "Job": JOB,
    "Event": EVENT,
    "Refusal": REFUSAL,
    "Error": ERROR_SCHEMA,
    "QuarantineItem": QUARANTINE_ITEM,
    "QuarantineDetail": QUARANTINE_DETAIL,
    "ReplayItem": REPLAY_ITEM,
    "ReplayFilter": REPLAY_FILTER,
    "ReplayTotals": REPLAY_TOTALS,
}
