"""Alibaba MNS queue messages: decode the body, then route it to VOD or MPS by content.

Whether VOD and MPS write the MNS body as raw JSON or Base64 is not documented, so both
are accepted. One queue may carry VOD events (`EventType`) and MPS notices (`Type`), told
apart here.
"""

import base64
import binascii
import json

from ..base import Event, InvalidPayload
from . import mps as aliyun_mps
from . import vod as aliyun_vod

NAME = "aliyun_mns"


def decode(body: str | bytes) -> dict:
    """Return the JSON object in a message body, raw or Base64-encoded."""
    try:
        doc = json.loads(body)
    except (ValueError, RecursionError):
        try:
            doc = json.loads(base64.b64decode(body, validate=True))
        except (binascii.Error, ValueError, RecursionError):
            raise InvalidPayload("queue message is neither JSON nor Base64-encoded JSON") from None
    if not isinstance(doc, dict):
        raise InvalidPayload("queue message is JSON but not an object")
    return doc


def parse(body: str) -> Event:
    """Turn one queue message into an Event; the stored payload is the body as received."""
    doc = decode(body)
    if aliyun_mps.is_mps(doc):
        return aliyun_mps.parse_doc(doc, body)
    if "EventType" in doc:
        return aliyun_vod.parse_doc(doc, body)
    raise InvalidPayload(
        "queue message is neither a VOD event (EventType) nor an MPS notice (Type)"
    )
