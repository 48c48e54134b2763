"""ApsaraVideo MPS job notices, which arrive only as MNS queue messages.

Smart production (`Type: IProduction`, plus the lower-case TextToSpeech shape) and the
general MPS job notice (Transcode, Snapshot, Analysis, MediaInfo...) of the same pipeline
queue. Any failure signal (a `Fail` state, or an error code other than `Success`) fails the
job, whatever else the notice says.
"""

import json
from collections.abc import Mapping
from typing import Any

from .. import base as states
from ..base import (
    Event,
    HeaderLookup,
    InvalidPayload,
    InvalidSignature,
    as_list,
    body_text,
    dedup_key,
    load_json_object,
    text,
)

NAME = "aliyun_mps"
PROVIDER, SERVICE = "aliyun", "mps"
SIGNATURE_SETTINGS = ()  # MNS messages are authenticated by the queue's own credentials

_STATES = {
    "success": states.SUCCEEDED,
    "fail": states.FAILED,
    "failed": states.FAILED,
    "queuing": states.PROCESSING,
    "analysing": states.PROCESSING,
    "analyzing": states.PROCESSING,
    "processing": states.PROCESSING,
}
_GENERAL_KINDS = {
    "transcode": "transcode",
    "snapshot": "snapshot",
    "analysis": "analysis",
    "mediainfo": "media_info",
}


def signature_secret(config: Mapping[str, Any]) -> None:
    """MPS has no HTTP callback to sign: always None."""
    return None


def has_signature(body: bytes, headers: HeaderLookup) -> bool:
    """MPS notices carry no signature of their own."""
    return False


def verify(body: bytes, headers: HeaderLookup, secret: Any, now: float | None = None) -> None:
    """Refuse: nothing signs an MPS notice, so nothing can be verified."""
    raise InvalidSignature("MPS notices are not signed; they arrive only through MNS")


def parse(body: bytes | str, headers: HeaderLookup | None = None) -> Event:
    """Turn one MPS notice into an Event."""
    return parse_doc(load_json_object(body, "an MPS job notice"), body_text(body))


def is_mps(doc: dict) -> bool:
    """Tell whether a decoded queue message is an MPS notice (rather than a VOD event)."""
    kind = doc.get("Type") or doc.get("type")
    if "EventType" in doc:
        return False
    return bool(kind) or ("jobId" in doc and "result" in doc)


def parse_doc(doc: dict, payload: str) -> Event:
    """Normalize an already decoded MPS notice."""
    kind = text(doc.get("Type")) or text(doc.get("type"))
    if kind == "IProduction":
        fields = _iproduction(doc)
    elif kind is None and "jobId" in doc and "result" in doc:
        kind, fields = "IProduction", _text_to_speech(doc)
    elif kind is not None and (doc.get("JobId") or doc.get("jobId")):
        fields = _general(doc, kind)
    else:
        raise InvalidPayload("not an MPS job notice: no Type/type with a JobId")
    return Event(
        provider=PROVIDER,
        service=SERVICE,
        event_type=kind,
        payload=payload,
        dedup_key=dedup_key(NAME, doc),
        **fields,
    )


def state_of(value: Any) -> str | None:
    """Map an MPS State (Queuing/Analysing/Fail/Success, any case) to a ledger state."""
    return _STATES.get((text(value) or "").lower())


_OK_CODES = frozenset({"", "0", "success", "ok"})


def _failure(doc: dict, state: str | None) -> dict:
    """Return state/error of a notice: a failed state, or a code other than Success, fails."""
    # Keys come in both cases; they should agree, and if they do not, the failing one wins.
    given = [c for c in (text(doc.get("Code")), text(doc.get("code"))) if c is not None]
    bad = [c for c in given if c.lower() not in _OK_CODES]
    code = bad[0] if bad else next(iter(given), None)
    msg = text(doc.get("Message")) or text(doc.get("msg")) or text(doc.get("Msg"))
    if state == states.FAILED or bad:
        return {
            "state": states.FAILED,
            "error_code": code or "Fail",
            "error_message": msg or "the MPS job failed",
        }
    return {"state": state or states.PROCESSING}


def _iproduction(doc: dict) -> dict:
    job_id = text(doc.get("JobId"))
    state = state_of(doc.get("State"))
    if job_id is None or state is None:
        raise InvalidPayload("IProduction notice without JobId or a known State")
    details = as_list(doc.get("Details"))
    return {
        "kind": "iproduction",
        "provider_job_id": job_id,
        "outputs": tuple(d for d in details if isinstance(d, dict)),
        **_failure(doc, state),
    }


def _text_to_speech(doc: dict) -> dict:
    """TextToSpeech: lower-case keys and `result` as a JSON string holding Code/Message."""
    job_id = text(doc.get("jobId"))
    result = doc.get("result")
    if isinstance(result, str):
        try:
            result = json.loads(result)
        except ValueError as e:
            raise InvalidPayload("TextToSpeech result is not JSON") from e
    if job_id is None or not isinstance(result, dict):
        raise InvalidPayload("TextToSpeech notice without jobId or result")
    ok = (text(result.get("Code")) or "").lower() == "success"
    return {
        "kind": "iproduction",
        "provider_job_id": job_id,
        "state": states.SUCCEEDED if ok else states.FAILED,
        "error_code": None if ok else text(result.get("Code")),
        "error_message": None if ok else text(result.get("Message")),
    }


def _general(doc: dict, kind: str) -> dict:
    """The general MPS job notice: keys repeated in both cases; failures add code/msg.

    Transcode, Snapshot, Analysis and MediaInfo jobs settle by their JobId, like smart
    production jobs; a notice without a known state leaves its job processing.
    """
    return {
        "kind": _GENERAL_KINDS.get(kind.lower(), kind.lower()),
        "provider_job_id": text(doc.get("JobId")) or text(doc.get("jobId")),
        **_failure(doc, state_of(doc.get("State") or doc.get("state"))),
    }
