"""Provider callbacks: verify, parse, record in one transaction, then acknowledge with 200.

One generic view for every sender; the order of the steps never changes. Nothing else
happens before the answer: alerts, polls and pages all read the ledger later.
"""

import functools
import hmac
import json
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from flask import Blueprint, current_app, jsonify, request
from werkzeug.exceptions import (
    NotFound,
    RequestEntityTooLarge,
    ServiceUnavailable,
    Unauthorized,
)

from ..db import get_writer
from ..ops.metrics import APPLY_SECONDS, HOOK_REQUESTS
from ..providers import HTTP_PROVIDERS, InvalidPayload, InvalidSignature, Provider, get_provider
from . import rejections

bp = Blueprint("hooks", __name__, url_prefix="/hooks")
log = logging.getLogger("jobledger.hooks")


class Rejected(Unauthorized):
    """A 401 that says why, for the dashboard's count of rejected deliveries."""

    def __init__(self, description: str, reason: str):
        super().__init__(description)
        self.reason = reason  # bad_signature | stale_timestamp | bad_token | unsigned


@dataclass(frozen=True)
class Auth:
    """How a delivery was authenticated."""

    verified: bool
    method: str  # "signature" | "token" | "none"


def authenticate(provider: Provider, body: bytes) -> Auth:
    """Decide whether to accept a delivery; raise 401 or 503 otherwise.

    A valid provider signature is enough. A request without one must carry the hook token
    when one is set. With no secret at all configured for the provider, only
    RECEIVER_ALLOW_UNSIGNED lets it in (marked unverified); otherwise the provider is not
    configured (503). Verification is never skipped because a secret is missing.
    """
    config = current_app.config
    secret = provider.signature_secret(config)
    token = config.get("HOOK_TOKEN")
    if provider.has_signature(body, request.headers) and secret is not None:
        try:
            provider.verify(body, request.headers, secret)
        except InvalidSignature as e:
            log.warning(f"hooks.{provider.NAME}.bad-signature", extra={"reason": str(e)})
            reason = "stale_timestamp" if e.stale else "bad_signature"
            raise Rejected(f"signature rejected: {e}", reason) from None
        return Auth(True, "signature")
    if token:
        given = request.args.get("token", "")
        if hmac.compare_digest(given.encode(), token.encode()):
            return Auth(True, "token")
        log.warning(f"hooks.{provider.NAME}.bad-token")
        raise Rejected(
            "missing or wrong ?token= (RECEIVER_HOOK_TOKEN) and no valid signature", "bad_token"
        )
    if secret is not None:
        log.warning(f"hooks.{provider.NAME}.unsigned")
        raise Rejected("the request carries no signature", "unsigned")
    if config.get("ALLOW_UNSIGNED"):
        return Auth(False, "none")
    names = " and ".join(f"RECEIVER_{s}" for s in provider.SIGNATURE_SETTINGS)
    log.error(f"hooks.{provider.NAME}.not-configured")
    raise ServiceUnavailable(
        f"{provider.NAME} callbacks are not configured: set {names}, or RECEIVER_HOOK_TOKEN"
    )


def _count_rejection(name: str, e: Rejected | ServiceUnavailable) -> None:
    """Count a rejected delivery for the dashboard, in memory (written every few seconds,
    receiver/inbound/rejections.py): a flood of 401s never queues on the ledger."""
    reason = e.reason if isinstance(e, Rejected) else "not_configured"
    rejections.TALLY.add(current_app.config, name, reason, datetime.now(UTC))


@bp.post("/<vendor>/<service>")
def receive(vendor: str, service: str):
    """Accept one delivery: verify, parse, record, then acknowledge."""
    name = f"{vendor}_{service}"
    if name not in HTTP_PROVIDERS:
        raise NotFound(f"no callback endpoint for {vendor}/{service}")
    provider = get_provider(name)
    body = _read_body()
    started = time.perf_counter()
    try:
        auth = authenticate(provider, body)
    except (Rejected, ServiceUnavailable) as e:
        outcome = "unauthorized" if e.code == 401 else "not_configured"
        _requests(provider.NAME, outcome).inc()
        _count_rejection(provider.NAME, e)
        raise
    try:
        event = provider.parse(body, request.headers)
    except InvalidPayload as e:
        return _quarantine(provider, body, auth, str(e))
    result = get_writer().record_event(
        event, source="http", verified=auth.verified, auth=auth.method
    )
    _applied(name).observe(time.perf_counter() - started)
    _requests(name, "duplicate" if result.duplicate_of else "recorded").inc()
    if result.changed and log.isEnabledFor(logging.DEBUG):
        # The ledger is the record of every notice, so this is debug-level only.
        log.debug(
            f"hooks.{name}.applied",
            extra={
                "event_id": result.event_id,
                "job_id": result.job_id,
                "state": result.state,
                "event_type": event.event_type,
            },
        )
    answer = {
        "ok": True,
        "event_id": result.event_id,
        "job_id": result.job_id,
        "state": result.state,
        "duplicate": result.duplicate_of is not None,
    }
    # Encoded directly: jsonify's provider machinery costs more than these five fields.
    return current_app.response_class(
        json.dumps(answer, separators=(",", ":")), mimetype="application/json"
    )


def _read_body() -> bytes:
    """Return the raw body, before anything parses it; 413 past MAX_CONTENT_LENGTH."""
    body = request.get_data(cache=False)
    # Werkzeug cuts a chunked body (no Content-Length) at the limit without an error.
    limit = current_app.config["MAX_CONTENT_LENGTH"]
    if request.content_length is None and limit and len(body) >= limit:
        if request.environ["wsgi.input"].read(1):
            raise RequestEntityTooLarge(f"body over {limit} bytes")
    return body


def _quarantine(provider: Provider, body: bytes, auth: Auth, reason: str):
    """Keep an authenticated body that does not parse, and answer 400 naming its id."""
    qid = get_writer().quarantine(
        provider=provider.PROVIDER,
        service=provider.SERVICE,
        source="http",
        body=body,
        reason=reason,
        verified=auth.verified,
        auth=auth.method,
        meta={
            "content_type": request.content_type,
            "user_agent": request.user_agent.string,
            "remote_addr": request.remote_addr,
        },
    )
    log.warning(
        f"hooks.{provider.NAME}.quarantined", extra={"quarantine_id": qid, "reason": reason}
    )
    _requests(provider.NAME, "quarantined").inc()
    return jsonify(ok=False, error=reason, status=400, quarantine_id=qid), 400


@functools.cache
def _requests(name: str, outcome: str):
    """The hook request counter for one provider and outcome (labels() looks it up anew)."""
    return HOOK_REQUESTS.labels(name, outcome)


@functools.cache
def _applied(name: str):
    """The apply-latency histogram for one provider."""
    return APPLY_SECONDS.labels(name)
