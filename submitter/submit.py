"""Submit one job: record it, call the provider, record the answer, in that order.

The job is written (`submitting`) before the provider is called, so a crash in between
leaves a visible job, never a lost one; and a notice that beats the API answer finds that
job (the Ledger matches or merges it). Params and credentials are checked before that first
write: a usage error or a missing setting records nothing.
"""

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from store import Ledger, states

from .calls import (
    INTERACTIVE_BUDGET_S,
    NETWORK_ERROR,
    OUTCOME_UNKNOWN,
    Budget,
    CallFailed,
    UsageError,
)
from .operations import Operation, get_operation, open_client

log = logging.getLogger("jobledger.submitter")
MAX_METADATA = 4096  # bytes of an application's metadata, as compact JSON
UNKNOWN_HINT = (
    " A callback or `reconcile` settles the job if the provider did accept it; otherwise it"
    " stays `submitting` until its deadline. Check with the provider before submitting again."
)


@dataclass(frozen=True)
class Submission:
    """What one submission did: the job as recorded, and the failure if there was one."""

    job: dict
    operation: Operation
    error: CallFailed | None = None

    @property
    def accepted(self) -> bool:
        """Tell whether the provider accepted the request."""
        return self.error is None

    @property
    def outcome_unknown(self) -> bool:
        """Tell whether the request may have reached the provider without an answer."""
        return self.error is not None and self.error.outcome_unknown

    def describe_error(self) -> str:
        """Say what went wrong, in the provider's words (never with credentials)."""
        e = self.error
        if e is None:
            return ""
        name, status = self.operation.name, f" (HTTP {e.status})" if e.status else ""
        if e.outcome_unknown:
            return f"{name}: outcome unknown: {e.message}"
        if e.code == NETWORK_ERROR:
            return f"{name}: could not reach the provider: {e.message}"
        if e.retryable:
            return (
                f"{name}: the provider was still failing when the time ran out{status}: "
                f"{e.code}: {e.message}"
            )
        return f"{name} refused by the provider{status}: {e.code}: {e.message}"


def submit(
    ledger: Ledger,
    config: Mapping[str, Any],
    name: str,
    params: Mapping[str, Any],
    *,
    budget_s: float = INTERACTIVE_BUDGET_S,
    metadata: Any = None,
) -> Submission:
    """Submit operation `name` with `params`; return the recorded job and any failure.

    :param config: the app's settings (credentials, endpoints, MPS pipeline)
    :param budget_s: seconds all attempts together may take
    :param metadata: the application's own JSON object, kept on the job and sent in every
      message about it (a Start/Stop of a Live job the ledger knows keeps that job's own)
    :raises UsageError: unknown operation, bad params or metadata (nothing recorded)
    :raises NotConfigured: the provider's credentials are not set (nothing recorded)
    """
    op = get_operation(name)
    call_params = op.prepare(params, config)
    meta = metadata_text(metadata)
    with open_client(op.client, config) as client:
        job, known = _begin(ledger, op, call_params, meta)
        log.info("submitter.submitting", extra={"operation": op.name, "job_id": job["id"]})
        try:
            answer = op.call(client, call_params, Budget(budget_s))
        except CallFailed as e:
            job = _record_failure(ledger, op, job, known, e)
            log.warning(
                "submitter.failed",
                extra={
                    "operation": op.name,
                    "job_id": job["id"],
                    "code": e.code,
                    "status": e.status,
                    "outcome_unknown": e.outcome_unknown,
                },
            )
            return Submission(job, op, e)
    provider_job_id = op.provider_job_id(answer, call_params)
    job = ledger.submissions.finish(
        job["id"],
        state=op.state,
        provider_job_id=provider_job_id,
        response=answer,
        operation=op.name,
    )
    log.info(
        "submitter.accepted",
        extra={"operation": op.name, "job_id": job["id"], "provider_job_id": provider_job_id},
    )
    return Submission(job, op)


def metadata_text(metadata: Any) -> str | None:
    """Return an application's metadata as the JSON text kept on the job (None for none).

    :raises UsageError: naming `metadata`: not a JSON object, or over MAX_METADATA bytes
    """
    if metadata is None or metadata == {}:
        return None
    if not isinstance(metadata, dict):
        raise UsageError("metadata must be a JSON object")
    try:
        text = json.dumps(metadata, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    except (ValueError, TypeError, RecursionError):
        raise UsageError("metadata must be a JSON object of JSON values") from None
    if len(text.encode()) > MAX_METADATA:
        raise UsageError(f"metadata is larger than {MAX_METADATA} bytes as JSON")
    return text


def _begin(ledger: Ledger, op: Operation, params: dict, metadata: str | None) -> tuple[dict, bool]:
    """Record the job before the call; return it and whether the ledger already knew it."""
    if op.toggles:
        known = ledger.jobs.find(op.provider, op.service, str(params["JobId"]))
        if known is not None:
            return ledger.submissions.note(known["id"], f"{op.name}:request", params), True
    # A Stop of a stream the ledger did not know adopts it as `external`. Its provider job
    # id is set only once the provider accepts: a refused Stop of an unknown id must not
    # claim that id for a job that does not exist.
    job = ledger.submissions.begin(
        provider=op.provider,
        service=op.service,
        kind=op.kind,
        operation=op.name,
        params=params,
        media_id=op.media_id(params),
        metadata=metadata,
        origin="external" if op.toggles and op.state == states.STOPPED else "submitted",
    )
    return job, False


def _record_failure(ledger: Ledger, op: Operation, job: dict, known: bool, e: CallFailed) -> dict:
    """Record a refusal (`submit_failed`) or an unknown outcome (still `submitting`).

    A refused Start/Stop of a known Live job leaves the stream's state alone: the refusal
    is on its timeline and in the answer to the caller.
    """
    response = e.as_response()
    if known:
        return ledger.submissions.note(job["id"], f"{op.name}:response", response)
    if e.outcome_unknown:
        return ledger.submissions.finish(
            job["id"],
            state=states.SUBMITTING,
            error_code=OUTCOME_UNKNOWN,
            error_message=e.message + UNKNOWN_HINT,
            response=response,
        )
    return ledger.submissions.finish(
        job["id"],
        state=states.SUBMIT_FAILED,
        error_code=e.code,
        error_message=e.message,
        response=response,
    )
