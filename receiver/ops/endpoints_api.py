"""The endpoints API: where jobledger sends job state changes, and what became of them.

| method and path | answer |
| --- | --- |
| `POST /api/endpoints` | 201, the endpoint with its `secret` |
| `GET /api/endpoints`, `GET /api/endpoints/<id>` | endpoints with their health, no secrets |
| `PATCH /api/endpoints/<id>` | the endpoint changed (`url`, `description`, `filter`, `enabled`) |
| `DELETE /api/endpoints/<id>` | 204 |
| `POST /api/endpoints/<id>/rotate-secret` | 200 `{"secret"}`; the old one signs too for 24 h |
| `GET /api/endpoints/<id>/deliveries` | a page of deliveries with their attempts |
| `POST /api/deliveries/<id>/retry` | 202; sent again now |
| `POST /api/endpoints/<id>/recover` | 200 `{"recovered": N}` |

An endpoint URL is checked as it is registered: its host must resolve, and to public
addresses only unless RECEIVER_DELIVERY_ALLOW_PRIVATE is set; the sender checks again at
every connection (receiver/background/transport.py).
"""

import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from flask import Blueprint, current_app, jsonify, request
from werkzeug.exceptions import NotFound

from store.deliveries import STATUSES
from store.endpoints import BadEndpoint, check_filter, check_secret, shown_url

from .. import params
from ..auth import require_ops
from ..background import transport
from ..db import get_ledger
from ..errors import error_response
from .api import ROW_ID, page_limit

bp = Blueprint("endpoints_api", __name__, url_prefix="/api")
log = logging.getLogger("jobledger.api")
FIELDS = ("url", "description", "filter", "secret", "enabled")
MAX_DESCRIPTION = 500
MAX_URL = 2000


@bp.before_request
def _ops_only():
    require_ops()


def check_fields(doc: Any, config: Mapping[str, Any], *, creating: bool) -> dict:
    """Return an endpoint's fields from a JSON body, checked.

    :raises BadEndpoint: the message starts with the field at fault
    """
    if not isinstance(doc, dict):
        raise BadEndpoint('body: expected a JSON object {"url": ..., "filter": {...}}')
    allowed = FIELDS if creating else ("url", "description", "filter", "enabled")
    unknown = [k for k in doc if k not in allowed]
    if unknown:
        hint = " (use rotate-secret)" if unknown[0] == "secret" else ""
        raise BadEndpoint(f"{str(unknown[0])[:40]}: not a field of an endpoint here{hint}")
    out: dict[str, Any] = {}
    if creating or "url" in doc:
        out["url"] = check_url(doc.get("url"), config)
    if "description" in doc:
        text = doc["description"]
        if text is not None and (not isinstance(text, str) or len(text) > MAX_DESCRIPTION):
            raise BadEndpoint(f"description must be text of at most {MAX_DESCRIPTION} characters")
        out["description"] = text
    if "filter" in doc:
        out["filter"] = check_filter(doc["filter"])
    if "enabled" in doc:
        if not isinstance(doc["enabled"], bool):
            raise BadEndpoint("enabled must be true or false")
        out["enabled"] = doc["enabled"]
    if doc.get("secret") is not None:
        out["secret"] = check_secret(doc["secret"])
    return out


def check_url(url: Any, config: Mapping[str, Any]) -> str:
    """Return an endpoint URL that is well-formed and may be reached.

    :raises BadEndpoint: naming `url`
    """
    if not isinstance(url, str) or not url.strip():
        raise BadEndpoint("url is required: an http(s) URL, an SNS topic ARN or an SQS URL")
    url = url.strip()
    if len(url) > MAX_URL:
        raise BadEndpoint(f"url is longer than {MAX_URL} characters")
    try:
        transport.check_target(url, bool(config.get("DELIVERY_ALLOW_PRIVATE")))
    except transport.NotAllowed as e:
        raise BadEndpoint(
            f"url: {e}; set RECEIVER_DELIVERY_ALLOW_PRIVATE=1 to allow such endpoints"
        ) from None
    except ValueError as e:
        raise BadEndpoint(f"url: {e}") from None
    return url


def _body() -> dict:
    return params.json_object("body", request.get_data())


def _endpoint_or_404(endpoint_id: str) -> dict:
    endpoint = get_ledger().endpoints.get(endpoint_id)
    if endpoint is None:
        raise NotFound(f"no endpoint {endpoint_id}")
    return endpoint


@bp.post("/endpoints")
def create_endpoint():
    """Register an endpoint; answer it with its secret (shown this once)."""
    try:
        fields = check_fields(_body(), current_app.config, creating=True)
    except BadEndpoint as e:
        return error_response(400, str(e))
    endpoint = get_ledger().endpoints.create(**fields)
    extra = {"endpoint": endpoint["id"], "url": shown_url(fields["url"])}
    log.info("api.endpoint-created", extra=extra)
    response = jsonify(endpoint)
    response.status_code = 201
    response.headers["Location"] = f"/api/endpoints/{endpoint['id']}"
    return response


@bp.get("/endpoints")
def list_endpoints():
    """List every endpoint with its health (never a secret)."""
    return jsonify(endpoints=get_ledger().endpoints.all())


@bp.get("/endpoints/<endpoint_id>")
def get_endpoint(endpoint_id: str):
    """Return one endpoint with its health."""
    return jsonify(_endpoint_or_404(endpoint_id))


@bp.patch("/endpoints/<endpoint_id>")
def update_endpoint(endpoint_id: str):
    """Change an endpoint's url, description, filter or enabled; enabling sends what waits."""
    _endpoint_or_404(endpoint_id)
    try:
        fields = check_fields(_body(), current_app.config, creating=False)
    except BadEndpoint as e:
        return error_response(400, str(e))
    endpoint = get_ledger().endpoints.update(endpoint_id, fields)
    if endpoint is None:
        raise NotFound(f"no endpoint {endpoint_id}")
    log.info("api.endpoint-updated", extra={"endpoint": endpoint_id, "fields": sorted(fields)})
    return jsonify(endpoint)


@bp.delete("/endpoints/<endpoint_id>")
def delete_endpoint(endpoint_id: str):
    """Delete an endpoint: nothing more is sent to it."""
    if not get_ledger().endpoints.delete(endpoint_id):
        raise NotFound(f"no endpoint {endpoint_id}")
    log.info("api.endpoint-deleted", extra={"endpoint": endpoint_id})
    return "", 204


@bp.post("/endpoints/<endpoint_id>/rotate-secret")
def rotate_secret(endpoint_id: str):
    """Give an endpoint a new secret (or the one given); the old one signs for 24 h more."""
    doc = _body()
    if not isinstance(doc, dict) or set(doc) - {"secret"}:
        return error_response(400, 'body: expected nothing, or {"secret": "whsec_..."}')
    try:
        given = check_secret(doc["secret"]) if doc.get("secret") is not None else None
    except BadEndpoint as e:
        return error_response(400, str(e))
    secret = get_ledger().endpoints.rotate_secret(endpoint_id, given)
    if secret is None:
        raise NotFound(f"no endpoint {endpoint_id}")
    log.info("api.endpoint-secret-rotated", extra={"endpoint": endpoint_id})
    return jsonify(secret=secret)


def delivery_query() -> dict:
    """Read the deliveries filters from the query string (shared with the pages)."""
    args = request.args
    return {
        "status": list(params.choices("status", args.getlist("status"), STATUSES)) or None,
        "since": params.moment("since", args.get("since")),
        "until": params.moment("until", args.get("until")),
        "cursor": params.whole("cursor", args.get("cursor"), minimum=1),
        "limit": page_limit(args),
    }


@bp.get("/endpoints/<endpoint_id>/deliveries")
def list_deliveries(endpoint_id: str):
    """List an endpoint's deliveries newest first, each with its attempts."""
    _endpoint_or_404(endpoint_id)
    deliveries, next_cursor = get_ledger().deliveries.search(endpoint_id, **delivery_query())
    return jsonify(deliveries=deliveries, next_cursor=next_cursor)


@bp.post(f"/deliveries/<{ROW_ID}:delivery_id>/retry")
def retry_delivery(delivery_id: int):
    """Send one delivery again now, whatever its status."""
    if not get_ledger().deliveries.retry(delivery_id, datetime.now(UTC)):
        raise NotFound(f"no delivery {delivery_id}")
    log.info("api.delivery-retry", extra={"delivery_id": delivery_id})
    return jsonify(ok=True, id=delivery_id, status="pending"), 202


@bp.post("/endpoints/<endpoint_id>/recover")
def recover(endpoint_id: str):
    """Make every delivery to an endpoint that failed since `since` pending again."""
    _endpoint_or_404(endpoint_id)
    doc = _body()
    since = params.moment("since", doc.get("since"))
    if since is None:
        return error_response(400, 'since is required: {"since": "<ISO 8601 time>"}')
    recovered = get_ledger().deliveries.recover(endpoint_id, since, datetime.now(UTC))
    log.info("api.endpoint-recover", extra={"endpoint": endpoint_id, "recovered": recovered})
    return jsonify(recovered=recovered)
