"""The OpenAPI description of the endpoints API (receiver/ops/endpoints_api.py)."""

from .openapi_schema import ERROR, NULLABLE_INT, NULLABLE_STR, ROW_ID, json_body, query

_OPS_ERRORS = {"401": ERROR, "403": ERROR}
_STRINGS = {"type": "array", "items": {"type": "string"}}
FILTER = {
    "type": "object",
    "description": "each list optional; an empty or absent filter matches every job",
    "additionalProperties": False,
    "properties": {key: _STRINGS for key in ("provider", "service", "kind", "state", "origin")},
}
ENDPOINT = {
    "type": "object",
    "required": [
        "id",
        "url",
        "description",
        "filter",
        "enabled",
        "disabled_reason",
        "created_at",
        "last_success_at",
        "last_failure_at",
        "failing_since",
        "pending",
        "delivered",
        "failed",
    ],
    "properties": {
        "id": {"type": "string"},
        "url": {"type": "string"},
        "description": NULLABLE_STR,
        "filter": {"type": "object"},
        "enabled": {"type": "boolean"},
        "disabled_reason": NULLABLE_STR,
        "created_at": {"type": "string"},
        "updated_at": {"type": "string"},
        "last_success_at": NULLABLE_STR,
        "last_failure_at": NULLABLE_STR,
        "failing_since": NULLABLE_STR,
        "pending": {"type": "integer"},
        "delivered": {"type": "integer"},
        "failed": {"type": "integer"},
    },
}
ATTEMPT = {
    "type": "object",
    "required": ["at", "status_code", "error", "duration_ms"],
    "properties": {
        "at": {"type": "string"},
        "status_code": NULLABLE_INT,
        "error": NULLABLE_STR,
        "duration_ms": {"type": "integer"},
        "response_excerpt": NULLABLE_STR,
    },
}
DELIVERY = {
    "type": "object",
    "required": ["id", "message_id", "job_id", "type", "status", "attempts", "next_attempt_at"],
    "properties": {
        "id": {"type": "integer"},
        "message_id": {"type": "string", "description": "the webhook-id"},
        "job_id": {"type": "string"},
        "sequence": {"type": "integer"},
        "type": {"type": "string"},
        "status": {"type": "string", "enum": ["pending", "delivered", "failed"]},
        "created_at": {"type": "string"},
        "attempts": {"type": "array", "items": {"$ref": "#/components/schemas/Attempt"}},
        "next_attempt_at": NULLABLE_STR,
    },
}
ENDPOINT_SCHEMAS = {"Endpoint": ENDPOINT, "Attempt": ATTEMPT, "Delivery": DELIVERY}
_ENDPOINT = {"$ref": "#/components/schemas/Endpoint"}
_ID = [{"name": "endpoint_id", "in": "path", "required": True, "schema": {"type": "string"}}]
_FIELDS = {
    "url": {"type": "string", "description": "http(s) URL, SNS topic ARN or SQS queue URL"},
    "description": NULLABLE_STR,
    "filter": FILTER,
    "enabled": {"type": "boolean"},
}


def _body(required: list[str], properties: dict) -> dict:
    schema = {"type": "object", "required": required, "properties": properties}
    return {"required": False, "content": {"application/json": {"schema": schema}}}


ENDPOINT_PATHS = {
    "/api/endpoints": {
        "get": {
            "operationId": "listEndpoints",
            "summary": "Every endpoint with its health (never a secret)",
            "responses": {
                "200": json_body(
                    {
                        "type": "object",
                        "required": ["endpoints"],
                        "properties": {"endpoints": {"type": "array", "items": _ENDPOINT}},
                    }
                ),
                **_OPS_ERRORS,
            },
        },
        "post": {
            "operationId": "createEndpoint",
            "summary": "Register an endpoint; its secret is in this answer only",
            "requestBody": _body(["url"], {**_FIELDS, "secret": {"type": "string"}}),
            "responses": {
                "201": json_body(
                    {"allOf": [_ENDPOINT, {"required": ["secret"]}]}, "created, with its secret"
                ),
                "400": ERROR,
                **_OPS_ERRORS,
            },
        },
    },
    "/api/endpoints/{endpoint_id}": {
        "get": {
            "operationId": "getEndpoint",
            "summary": "One endpoint with its health",
            "parameters": _ID,
            "responses": {"200": json_body(_ENDPOINT), **_OPS_ERRORS, "404": ERROR},
        },
        "patch": {
            "operationId": "updateEndpoint",
            "summary": "Change url, description, filter or enabled; enabling sends what waits",
            "parameters": _ID,
            "requestBody": _body([], _FIELDS),
            "responses": {"200": json_body(_ENDPOINT), "400": ERROR, **_OPS_ERRORS, "404": ERROR},
        },
        "delete": {
            "operationId": "deleteEndpoint",
            "summary": "Delete it: nothing more is sent to it",
            "parameters": _ID,
            "responses": {"204": {"description": "deleted"}, **_OPS_ERRORS, "404": ERROR},
        },
    },
    "/api/endpoints/{endpoint_id}/rotate-secret": {
        "post": {
            "operationId": "rotateEndpointSecret",
            "summary": "A new secret; the old one also signs for 24 hours",
            "parameters": _ID,
            "requestBody": _body([], {"secret": {"type": "string"}}),
            "responses": {
                "200": json_body(
                    {
                        "type": "object",
                        "required": ["secret"],
                        "properties": {"secret": {"type": "string"}},
                    }
                ),
                "400": ERROR,
                **_OPS_ERRORS,
                "404": ERROR,
            },
        }
    },
    "/api/endpoints/{endpoint_id}/deliveries": {
        "get": {
            "operationId": "listDeliveries",
            "summary": "An endpoint's deliveries newest first, each with its attempts",
            "parameters": [
                *_ID,
                {
                    "name": "status",
                    "in": "query",
                    "required": False,
                    "style": "form",
                    "explode": True,
                    "schema": {
                        "type": "array",
                        "items": {"type": "string", "enum": ["pending", "delivered", "failed"]},
                    },
                },
                query("since", "the change at or after (ISO 8601)", {"type": "string"}),
                query("until", "the change at or before (ISO 8601)", {"type": "string"}),
                query(
                    "limit",
                    "page size",
                    {"type": "integer", "minimum": 1, "maximum": 500, "default": 50},
                ),
                query(
                    "cursor",
                    "next_cursor of the previous page",
                    {"type": "string", "pattern": "^[0-9]{1,18}$"},
                ),
            ],
            "responses": {
                "200": json_body(
                    {
                        "type": "object",
                        "required": ["deliveries", "next_cursor"],
                        "properties": {
                            "deliveries": {
                                "type": "array",
                                "items": {"$ref": "#/components/schemas/Delivery"},
                            },
                            "next_cursor": NULLABLE_STR,
                        },
                    }
                ),
                "400": ERROR,
                **_OPS_ERRORS,
                "404": ERROR,
            },
        }
    },
    "/api/deliveries/{delivery_id}/retry": {
        "post": {
            "operationId": "retryDelivery",
            "summary": "Send one delivery again now, whatever its status",
            "parameters": [
                {"name": "delivery_id", "in": "path", "required": True, "schema": ROW_ID}
            ],
            "responses": {"202": json_body({"type": "object"}), **_OPS_ERRORS, "404": ERROR},
        }
    },
    "/api/endpoints/{endpoint_id}/recover": {
        "post": {
            "operationId": "recoverEndpoint",
            "summary": "Every delivery to it that failed since then becomes pending again",
            "parameters": _ID,
            "requestBody": _body(["since"], {"since": {"type": "string"}}),
            "responses": {
                "200": json_body(
                    {
                        "type": "object",
                        "required": ["recovered"],
                        "properties": {"recovered": {"type": "integer"}},
                    }
                ),
                "400": ERROR,
                **_OPS_ERRORS,
                "404": ERROR,
            },
        }
    },
}
