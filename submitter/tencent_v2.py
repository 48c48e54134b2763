"""The legacy Tencent VOD v2 API (`/v2/index.php`): RunProcedure and GetTaskInfo.

There is no maintained SDK (the last, qcloudapi-sdk-python 2.0.15, always uses HTTPS to a
fixed host), so the documented protocol is implemented here, with the documented test
vectors in tests/test_tencent_v2_signature.py (from Tencent's v2 API signature page).

* Nested params are flattened with dots: `fileList.0.id`, `stream.streamId`.
* Signature: every param but `Signature`, raw values, `_` read as `.` in names, sorted,
  `k=v&...`; `POST` + host + path + `?` + that; base64 HMAC-SHA256 (or HMAC-SHA1).
* The request is a form-urlencoded POST to `RECEIVER_TENCENT_VOD_V2_URL`; the answer is
  `{"code": 0, "message": "", ...}`, any other `code` is an error.
"""

import base64
import hashlib
import hmac
import json
import re
import secrets
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode, urlsplit

from .calls import (
    INVALID_RESPONSE,
    OUTCOME_UNKNOWN,
    Budget,
    CallFailed,
    NotConfigured,
    call_with_retries,
    network_failure,
)

CREDENTIALS = ("TENCENT_SECRET_ID", "TENCENT_SECRET_KEY")
DEFAULT_URL = "https://vod.api.qcloud.com/v2/index.php"
REGION = "gz"  # "for VOD, gz is fine" (common parameters page)
COMMON = frozenset(
    {
        "Action",
        "Region",
        "Timestamp",
        "Nonce",
        "SecretId",
        "Signature",
        "SignatureMethod",
        "Token",
        "RequestClient",
    }
)
# v2 common codes worth asking again: quota (frequency) exceeded, internal error, API
# temporarily unavailable. Business codes (1000, 10008, 50005, 4xxx...) are never retried.
RETRYABLE = frozenset({4400, 6000, 6200})
THROTTLED = frozenset({4400})


def sign(method: str, host: str, path: str, params: Mapping[str, Any], secret_key: str) -> str:
    """Compute a v2 `Signature` (HmacSHA256 when `SignatureMethod` is exactly that, else SHA1)."""
    items = {k.replace("_", "."): str(v) for k, v in params.items() if k != "Signature"}
    digest = hashlib.sha256 if items.get("SignatureMethod") == "HmacSHA256" else hashlib.sha1
    query = "&".join(f"{k}={items[k]}" for k in sorted(items))
    message = f"{method.upper()}{host}{path}?{query}"
    mac = hmac.new(secret_key.encode(), message.encode(), digest)
    return base64.b64encode(mac.digest()).decode()


def flatten(params: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Flatten nested params the v2 way: {"fileList": [{"id": 1}]} -> {"fileList.0.id": "1"}."""
    flat: dict[str, str] = {}
    for key, value in params.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, Mapping):
            flat.update(flatten(value, name))
        elif isinstance(value, (list, tuple)):
            flat.update(flatten({str(i): v for i, v in enumerate(value)}, name))
        elif isinstance(value, bool):
            flat[name] = "1" if value else "0"
        elif value is not None:
            flat[name] = str(value)
    return flat


def _decode(raw: bytes) -> dict | None:
    """Decode an answer; tolerate the trailing comma of the documented samples."""
    text = raw.decode("utf-8", "replace")
    for candidate in (text, re.sub(r",\s*([}\]])", r"\1", text)):
        try:
            doc = json.loads(candidate)
        except ValueError:
            continue
        return doc if isinstance(doc, dict) else None
    return None


class TencentV2:
    """A v2 client over urllib; stateless apart from the settings."""

    def __init__(self, config: Mapping[str, Any]):
        secret_id, secret_key = (config.get(name) for name in CREDENTIALS)
        if not secret_id or not secret_key:
            raise NotConfigured("Tencent Cloud", CREDENTIALS)
        self._secret_id: str = secret_id
        self._secret_key: str = secret_key
        self._url = config.get("TENCENT_VOD_V2_URL") or DEFAULT_URL

    def __enter__(self) -> "TencentV2":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Nothing to close: each call opens and closes its own connection."""

    def signed_params(self, action: str, params: Mapping[str, Any], now: float | None = None):
        """Return the flat, signed form parameters of one request."""
        flat = flatten(params)
        flat.update(
            {
                "Action": action,
                "Region": REGION,
                "SecretId": self._secret_id,
                "Timestamp": str(int(time.time() if now is None else now)),
                "Nonce": str(secrets.randbelow(2**31 - 1) + 1),
                "SignatureMethod": "HmacSHA256",
            }
        )
        url = urlsplit(self._url)
        flat["Signature"] = sign("POST", url.netloc, url.path, flat, self._secret_key)
        return flat

    def call(
        self,
        action: str,
        params: Mapping[str, Any],
        *,
        budget: Budget,
        idempotent: bool = False,
        retry_throttled: bool = True,
    ) -> dict:
        """POST one v2 action; return the answer (its `code` is 0).

        :raises CallFailed: a non-zero `code` (the provider's, as text), or no usable answer
        """

        def attempt(timeout: float) -> dict:
            return _answer(action, self._post(action, params, timeout))

        return call_with_retries(
            attempt, budget, idempotent=idempotent, retry_throttled=retry_throttled
        )

    def _post(self, action: str, params: Mapping[str, Any], timeout: float) -> bytes:
        """Send one signed POST; return the answer's bytes.

        :raises CallFailed: an HTTP error status, a network failure before the request
          arrived, or no answer after it was sent (the outcome is then unknown)
        """
        body = urlencode(self.signed_params(action, params)).encode()
        request = urllib.request.Request(
            self._url,
            data=body,
            method="POST",
            headers={
                "Content-Type": "application/x-www-form-urlencoded",
                "Host": urlsplit(self._url).netloc,  # the host that was signed
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return response.read()
        except urllib.error.HTTPError as e:
            status = e.code
            e.close()
            raise CallFailed(
                f"HTTP{status}",
                f"{action}: HTTP {status} from the v2 API",
                status=status,
                retryable=status >= 500,
            ) from None
        except urllib.error.URLError as e:  # connecting or sending failed: never arrived
            raise network_failure(str(e.reason)) from None
        except TimeoutError:
            raise network_failure(f"Read timed out after {timeout:.1f} s") from None
        except OSError as e:  # the connection dropped after the request was sent
            raise CallFailed(
                OUTCOME_UNKNOWN,
                "no answer after the request was sent, so"
                f" the provider may have accepted it: {e!r}",
                retryable=True,
                outcome_unknown=True,
            ) from None


def _answer(action: str, raw: bytes) -> dict:
    """Return a v2 answer whose `code` is 0; raise CallFailed with the provider's code else."""
    answer = _decode(raw)
    if answer is None:
        raise CallFailed(
            INVALID_RESPONSE, f"{action}: answer is not a JSON object", outcome_unknown=True
        )
    code = answer.get("code")
    if code in (0, "0"):
        return answer
    word = str(code)
    number = int(word) if word.lstrip("-").isdigit() else None
    raise CallFailed(
        str(code),
        str(answer.get("message") or ""),
        body=answer,
        retryable=number in RETRYABLE,
        throttled=number in THROTTLED,
    )
