"""The OpenAPI 3 description of the JSON API, served at /api/openapi.json.

Kept true by a schemathesis run in tests/test_openapi.py: every documented operation is
called with generated inputs and every answer is checked against this document.
"""

_NULLABLE_STR = {"type": "string", "nullable": True}
_TIME = {
    "type": "string",
    "format": "date-time",
    "pattern": r"^\d{4}-\d{2}-\d{2}(T\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?)?(Z|[+-]\d{2}:\d{2})?$",
}
_ERROR = {
    "description": "error",
    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
}


def _list_param(name: str, description: str) -> dict:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "description": description,
        "style": "form",
        "explode": True,
        "schema": {"type": "array", "items": {"type": "string"}},
    }


def _query(name: str, description: str, schema: dict) -> dict:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "description": description,
        "schema": schema,
    }


def _json(schema: dict, description: str = "success") -> dict:
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
    ],
    "properties": {
        "id": {"type": "string", "description": "ledger id, sortable by creation"},
        "provider": {"type": "string", "enum": ["aliyun", "tencent"]},
        "service": {"type": "string", "enum": ["vod", "mps", "live"]},
        "kind": {"type": "string"},
        "provider_job_id": _NULLABLE_STR,
        "media_id": _NULLABLE_STR,
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
        "error_code": _NULLABLE_STR,
        "error_message": _NULLABLE_STR,
        "outputs": {"type": "array", "items": {"type": "object"}},
        "origin": {"type": "string", "enum": ["submitted", "external"]},
        "operation": _NULLABLE_STR,
        "submitted_at": {"type": "string"},
        "updated_at": {"type": "string"},
        "finished_at": _NULLABLE_STR,
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
        "job_id": _NULLABLE_STR,
        "provider": {"type": "string"},
        "service": {"type": "string"},
        "source": {"type": "string", "enum": ["http", "mns", "pull", "poll", "submit"]},
        "event_type": _NULLABLE_STR,
        "verified": {"type": "boolean"},
        "auth": _NULLABLE_STR,
        "duplicate_of": {"type": "integer", "nullable": True},
        "replay_of": {"type": "integer", "nullable": True},
        "state_after": _NULLABLE_STR,
        "received_at": {"type": "string"},
        "occurred_at": _NULLABLE_STR,
        "payload": {"type": "string", "nullable": True, "description": "the body as received"},
    },
}
COUNTS = {"type": "object", "additionalProperties": {"type": "integer"}}

SPEC = {
    "openapi": "3.0.3",
    "info": {
        "title": "jobledger",
        "version": "1",
        "description": "The ledger of cloud media jobs and the provider notices that settle them.",
    },
    "components": {
        "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        "schemas": {
            "Job": JOB,
            "Event": EVENT,
            "Refusal": {
                "type": "object",
                "required": ["ok", "error", "status", "job"],
                "properties": {
                    "ok": {"type": "boolean", "enum": [False]},
                    "error": {"type": "string"},
                    "status": {"type": "integer"},
                    "job": {"$ref": "#/components/schemas/Job"},
                },
            },
            "Error": {
                "type": "object",
                "required": ["ok", "error", "status"],
                "properties": {
                    "ok": {"type": "boolean", "enum": [False]},
                    "error": {"type": "string"},
                    "status": {"type": "integer"},
                },
            },
        },
    },
    "security": [{"bearer": []}],
    "paths": {
        "/api/jobs": {
            "get": {
                "operationId": "listJobs",
                "summary": "Jobs newest first, filtered, one keyset page at a time",
                "parameters": [
                    _list_param("state", "job state; repeat for several"),
                    _list_param("provider", "aliyun or tencent; repeat for several"),
                    _list_param("service", "vod, mps or live; repeat for several"),
                    _list_param("kind", "job kind; repeat for several"),
                    _query(
                        "q", "ledger id, provider job id or media id, exactly", {"type": "string"}
                    ),
                    _query("since", "created at or after (ISO 8601)", {"type": "string"}),
                    _query("until", "created at or before (ISO 8601)", {"type": "string"}),
                    _query(
                        "limit",
                        "page size",
                        {"type": "integer", "minimum": 1, "maximum": 500, "default": 50},
                    ),
                    _query(
                        "cursor",
                        "next_cursor of the previous page",
                        {"type": "string", "pattern": "^[0-9A-HJKMNP-TV-Z]{26}$"},
                    ),
                ],
                "responses": {
                    "200": _json(
                        {
                            "type": "object",
                            "required": ["jobs", "next_cursor"],
                            "properties": {
                                "jobs": {
                                    "type": "array",
                                    "items": {"$ref": "#/components/schemas/Job"},
                                },
                                "next_cursor": _NULLABLE_STR,
                            },
                        }
                    ),
                    "400": _ERROR,
                    "401": _ERROR,
                    "403": _ERROR,
                },
            }
        },
        "/api/jobs/{job_id}": {
            "get": {
                "operationId": "getJob",
                "summary": "One job with its events, oldest first",
                "parameters": [
                    {"name": "job_id", "in": "path", "required": True, "schema": {"type": "string"}}
                ],
                "responses": {
                    "200": _json(
                        {
                            "allOf": [
                                {"$ref": "#/components/schemas/Job"},
                                {
                                    "type": "object",
                                    "required": ["events"],
                                    "properties": {
                                        "events": {
                                            "type": "array",
                                            "items": {"$ref": "#/components/schemas/Event"},
                                        }
                                    },
                                },
                            ]
                        }
                    ),
                    "401": _ERROR,
                    "403": _ERROR,
                    "404": _ERROR,
                },
            }
        },
        "/api/stats": {
            "get": {
                "operationId": "getStats",
                "summary": "Job counts",
                "responses": {
                    "200": _json(
                        {
                            "type": "object",
                            "required": [
                                "total",
                                "by_state",
                                "by_provider",
                                "by_service",
                                "by_kind",
                            ],
                            "properties": {
                                "total": {"type": "integer"},
                                "by_state": COUNTS,
                                "by_provider": COUNTS,
                                "by_service": COUNTS,
                                "by_kind": COUNTS,
                            },
                        }
                    ),
                    "401": _ERROR,
                    "403": _ERROR,
                },
            }
        },
        "/healthz": {
            "get": {
                "operationId": "health",
                "summary": "Liveness, without the database",
                "security": [],
                "responses": {
                    "200": _json(
                        {
                            "type": "object",
                            "required": ["ok"],
                            "properties": {"ok": {"type": "boolean"}},
                        }
                    )
                },
            }
        },
    },
}
