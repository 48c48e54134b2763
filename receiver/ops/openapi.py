"""The OpenAPI 3 description of every HTTP route, served at /api/openapi.json.

Kept true by a schemathesis run in tests/test_openapi.py: every documented operation is
called with generated inputs and every answer is checked against this document.
"""

from .openapi_endpoints import ENDPOINT_PATHS, ENDPOINT_SCHEMAS
from .openapi_schema import (
    ERROR,
    HEALTH,
    NULLABLE_STR,
    PROVIDERS,
    ROW_ID,
    SCHEMAS,
    SOURCES,
    STATUSES,
    json_body,
    list_param,
    query,
)

_OPS_ERRORS = {"401": ERROR, "403": ERROR}
_OPERATIONS = [
    "aliyun.vod.SubmitPreprocessJobs",
    "aliyun.vod.SubmitDynamicImageJob",
    "aliyun.mps.SubmitIProductionJob",
    "aliyun.live.StartEdgeTranscodeJob",
    "aliyun.live.StopEdgeTranscodeJob",
    "tencent.vod.RunProcedure",
    "tencent.vod.ProcessMediaByProcedure",
]


def _ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def _enum_list(name: str, values: list[str], description: str) -> dict:
    param = list_param(name, description)
    param["schema"] = {"type": "array", "items": {"type": "string", "enum": values}}
    return param


def _path_id(name: str) -> dict:
    return {"name": name, "in": "path", "required": True, "schema": ROW_ID}


def _page(key: str, item: dict) -> dict:
    return json_body(
        {
            "type": "object",
            "required": [key, "next_cursor"],
            "properties": {key: {"type": "array", "items": item}, "next_cursor": NULLABLE_STR},
        }
    )


_SINCE_UNTIL_LIMIT = [
    query("since", "at or after (ISO 8601)", {"type": "string"}),
    query("until", "at or before (ISO 8601)", {"type": "string"}),
    query("limit", "page size", {"type": "integer", "minimum": 1, "maximum": 500, "default": 50}),
]
_HOOK_ANSWER = json_body(
    {
        "type": "object",
        "required": ["ok"],
        "properties": {
            "ok": {"type": "boolean"},
            "event_id": {"type": "integer"},
            "job_id": NULLABLE_STR,
            "state": NULLABLE_STR,
            "duplicate": {"type": "boolean"},
        },
    },
    "recorded (or a duplicate), committed before this answer",
)


def _hook(provider: str, headers: list[str]) -> dict:
    """A provider callback: authenticated by signature or ?token=, not by the ops token."""
    params = [
        query("token", "RECEIVER_HOOK_TOKEN, for senders that cannot sign", {"type": "string"})
    ]
    params += [
        {"name": h, "in": "header", "required": False, "schema": {"type": "string"}}
        for h in headers
    ]
    return {
        "post": {
            "operationId": f"hook_{provider}",
            "summary": f"One {provider} notice: verify, parse, record, then answer 200",
            "security": [],
            "parameters": params,
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": {"type": "object"}}},
            },
            "responses": {
                "200": _HOOK_ANSWER,
                "400": json_body(
                    {
                        "allOf": [
                            _ref("Error"),
                            {"properties": {"quarantine_id": {"type": "integer"}}},
                        ]
                    },
                    "not an event: kept in quarantine when authenticated",
                ),
                "401": ERROR,
                "413": ERROR,
                "503": ERROR,
            },
        }
    }


PATHS = {
    "/api/jobs": {
        "get": {
            "operationId": "listJobs",
            "summary": "Jobs newest first, filtered, one keyset page at a time",
            "parameters": [
                list_param("state", "job state; repeat for several"),
                list_param("provider", "aliyun or tencent; repeat for several"),
                list_param("service", "vod, mps or live; repeat for several"),
                list_param("kind", "job kind; repeat for several"),
                query("q", "ledger id, provider job id or media id, exactly", {"type": "string"}),
                query(
                    "slow",
                    "only jobs running past their kind's p95",
                    {"type": "string", "enum": ["true", "false"]},
                ),
                *_SINCE_UNTIL_LIMIT,
                query(
                    "cursor",
                    "next_cursor of the previous page",
                    {"type": "string", "pattern": "^[0-9A-HJKMNP-TV-Z]{26}$"},
                ),
            ],
            "responses": {"200": _page("jobs", _ref("Job")), "400": ERROR, **_OPS_ERRORS},
        },
        "post": {
            "operationId": "submitJob",
            "summary": "Submit a job to its provider and record it",
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "required": ["operation"],
                            "properties": {
                                "operation": {"type": "string", "enum": _OPERATIONS},
                                "params": {"type": "object"},
                                "metadata": {
                                    "type": "object",
                                    "description": "the application's own (at most 4 KiB)",
                                },
                            },
                        }
                    }
                },
            },
            "responses": {
                "201": json_body(_ref("Job"), "accepted by the provider"),
                "400": ERROR,
                **_OPS_ERRORS,
                "422": json_body(_ref("Refusal"), "the provider refused it"),
                "502": json_body(_ref("Refusal"), "throttled, failing or unreachable"),
                "503": ERROR,
                "504": json_body(_ref("Refusal"), "sent, but no answer: outcome unknown"),
            },
        },
    },
    "/api/jobs/{job_id}": {
        "get": {
            "operationId": "getJob",
            "summary": "One job with its events, oldest first",
            "parameters": [
                {"name": "job_id", "in": "path", "required": True, "schema": {"type": "string"}}
            ],
            "responses": {
                "200": json_body(
                    {
                        "allOf": [
                            _ref("Job"),
                            {
                                "type": "object",
                                "required": ["events"],
                                "properties": {"events": {"type": "array", "items": _ref("Event")}},
                            },
                        ]
                    }
                ),
                **_OPS_ERRORS,
                "404": ERROR,
            },
        }
    },
    "/api/health/providers": {
        "get": {
            "operationId": "providerHealth",
            "summary": "Failure rates, anomalies and durations per provider, service and kind",
            "responses": {"200": json_body(HEALTH), **_OPS_ERRORS},
        },
    },
    "/api/stats": {
        "get": {
            "operationId": "getStats",
            "summary": "Job counts",
            "responses": {
                "200": json_body(
                    {
                        "type": "object",
                        "required": ["total", "by_state", "by_provider", "by_service", "by_kind"],
                        "properties": {
                            "total": {"type": "integer"},
                            **{
                                key: {"type": "object", "additionalProperties": {"type": "integer"}}
                                for key in ("by_state", "by_provider", "by_service", "by_kind")
                            },
                        },
                    }
                ),
                **_OPS_ERRORS,
            },
        }
    },
    "/api/quarantine": {
        "get": {
            "operationId": "listQuarantine",
            "summary": "Bodies that could not be parsed, newest first, one keyset page at a time",
            "parameters": [
                _enum_list("provider", PROVIDERS, "repeat for several"),
                _enum_list("service", ["vod", "mps", "mns"], "repeat for several"),
                _enum_list("source", SOURCES, "repeat for several"),
                _enum_list("status", STATUSES, "repeat for several"),
                *_SINCE_UNTIL_LIMIT,
                query(
                    "cursor",
                    "next_cursor of the previous page",
                    {"type": "string", "pattern": "^[0-9]{1,18}$"},
                ),
            ],
            "responses": {
                "200": _page("items", _ref("QuarantineItem")),
                "400": ERROR,
                **_OPS_ERRORS,
            },
        }
    },
    "/api/quarantine/{quarantine_id}": {
        "get": {
            "operationId": "getQuarantined",
            "summary": "One quarantined body: text, or Base64 when it is not UTF-8",
            "parameters": [_path_id("quarantine_id")],
            "responses": {
                "200": json_body(_ref("QuarantineDetail")),
                **_OPS_ERRORS,
                "404": ERROR,
            },
        }
    },
    "/api/quarantine/{quarantine_id}/replay": {
        "post": {
            "operationId": "replayQuarantined",
            "summary": "Parse it again and record it; ok false (still waiting) if it fails",
            "parameters": [_path_id("quarantine_id")],
            "responses": {
                "200": json_body(_ref("ReplayItem")),
                **_OPS_ERRORS,
                "404": ERROR,
                "409": json_body(_ref("Error"), "it was discarded"),
            },
        }
    },
    "/api/quarantine/{quarantine_id}/discard": {
        "post": {
            "operationId": "discardQuarantined",
            "summary": "Mark it discarded (kept, never deleted), with who and when",
            "parameters": [_path_id("quarantine_id")],
            "responses": {
                "200": json_body(
                    {"allOf": [_ref("QuarantineDetail"), {"required": ["ok"]}]}, "discarded"
                ),
                **_OPS_ERRORS,
                "404": ERROR,
                "409": json_body(_ref("Error"), "it was replayed already"),
            },
        }
    },
    "/api/replay": {
        "post": {
            "operationId": "bulkReplay",
            "summary": "Replay waiting quarantined bodies or stored events matching a filter",
            "requestBody": {
                "required": False,
                "content": {"application/json": {"schema": _ref("ReplayFilter")}},
            },
            "responses": {"200": json_body(_ref("ReplayTotals")), "400": ERROR, **_OPS_ERRORS},
        }
    },
    "/api/openapi.json": {
        "get": {
            "operationId": "openapi",
            "summary": "This document",
            "responses": {"200": json_body({"type": "object"}), **_OPS_ERRORS},
        }
    },
    "/metrics": {
        "get": {
            "operationId": "metrics",
            "summary": "Prometheus text format",
            "responses": {
                "200": {
                    "description": "metrics",
                    "content": {"text/plain": {"schema": {"type": "string"}}},
                },
                **_OPS_ERRORS,
            },
        }
    },
    "/healthz": {
        "get": {
            "operationId": "health",
            "summary": "Liveness, without the database",
            "security": [],
            "responses": {
                "200": json_body(
                    {
                        "type": "object",
                        "required": ["ok"],
                        "properties": {"ok": {"type": "boolean"}},
                    }
                )
            },
        }
    },
    "/hooks/aliyun/vod": _hook("aliyun_vod", ["X-VOD-TIMESTAMP", "X-VOD-SIGNATURE"]),
    "/hooks/tencent/vod": _hook("tencent_vod", []),
    **ENDPOINT_PATHS,
}

SPEC = {
    "openapi": "3.0.3",
    "info": {
        "title": "jobledger",
        "version": "1",
        "description": "The ledger of cloud media jobs and the provider notices that settle them.",
    },
    "components": {
        "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        "schemas": {**SCHEMAS, **ENDPOINT_SCHEMAS},
    },
    "security": [{"bearer": []}],
    "paths": PATHS,
}
