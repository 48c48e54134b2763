"""Tencent Cloud VOD API 3.0 calls through `tencentcloud-sdk-python-vod` (TC3-HMAC-SHA256).

`call_json` is used instead of the typed request/response models: it returns the answer
as the provider sent it (which is what the ledger records), and the models warn about
every field newer than the SDK ("... fileds are useless"), which would be noise at best.
`RECEIVER_TENCENT_VOD_ENDPOINT` is `host[:port]`; with a port the call is plain HTTP.
"""

from collections.abc import Mapping
from typing import Any

from .calls import Budget, CallFailed, NotConfigured, call_with_retries, network_failure

CREDENTIALS = ("TENCENT_SECRET_ID", "TENCENT_SECRET_KEY")
DEFAULT_ENDPOINT = "vod.tencentcloudapi.com"
# Tencent Cloud common error codes worth asking again. RequestLimitExceeded.* is throttling.
RETRYABLE_PREFIXES = ("InternalError", "ServerNetworkError", "ResourceUnavailable.ServiceBusy")


class TencentAPI:
    """One VodClient (one HTTP session) for API 3.0; use as a context manager."""

    def __init__(self, config: Mapping[str, Any]):
        secret_id, secret_key = (config.get(name) for name in CREDENTIALS)
        if not secret_id or not secret_key:
            raise NotConfigured("Tencent Cloud", CREDENTIALS)
        # Imported here: the VOD models module is large, and only this client needs it.
        from tencentcloud.common.credential import Credential
        from tencentcloud.common.profile.client_profile import ClientProfile
        from tencentcloud.common.profile.http_profile import HttpProfile
        from tencentcloud.vod.v20180717.vod_client import VodClient

        endpoint = config.get("TENCENT_VOD_ENDPOINT") or DEFAULT_ENDPOINT
        profile = HttpProfile(protocol="http" if ":" in endpoint else "https", endpoint=endpoint)
        self._client = VodClient(
            Credential(secret_id, secret_key), "", ClientProfile(httpProfile=profile)
        )

    def __enter__(self) -> "TencentAPI":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the pooled connections."""
        self._client.request.conn._session.close()

    def call(
        self,
        action: str,
        params: Mapping[str, Any],
        *,
        budget: Budget,
        idempotent: bool = False,
        retry_throttled: bool = True,
    ) -> dict:
        """Call `action` with `params` (JSON body); return the `Response` object.

        :raises CallFailed: an `Error` answer, or no usable answer within the budget
        """
        from tencentcloud.common.exception.tencent_cloud_sdk_exception import (
            TencentCloudSDKException,
        )

        def attempt(timeout: float) -> dict:
            # The SDK fixes its timeout when the client is built; each attempt gets what is
            # left of the budget instead.
            self._client.request.conn.timeout = timeout
            try:
                answer = self._client.call_json(action, dict(params))
            except TencentCloudSDKException as e:
                raise sdk_failure(e) from None
            except OSError as e:  # requests errors raised while reading a streamed body
                raise network_failure(str(e)) from None
            except ValueError as e:
                raise CallFailed(
                    "InvalidResponse", f"{action}: answer is not JSON: {e}", outcome_unknown=True
                ) from None
            response = answer.get("Response") if isinstance(answer, dict) else None
            if not isinstance(response, dict):
                raise CallFailed(
                    "InvalidResponse",
                    f"{action}: answer has no Response object",
                    outcome_unknown=True,
                )
            return response

        return call_with_retries(
            attempt, budget, idempotent=idempotent, retry_throttled=retry_throttled
        )


def sdk_failure(e: Any) -> CallFailed:
    """Translate a TencentCloudSDKException: an API error code, or the SDK's network codes."""
    code, message = e.get_code() or "UnknownError", e.get_message()
    if isinstance(message, bytes):
        message = message.decode("utf-8", "replace")
    message = str(message or "")
    if code == "ClientNetworkError":
        return network_failure(message)
    return CallFailed(
        code,
        message[:1000],
        request_id=e.get_request_id(),
        throttled=code.startswith("RequestLimitExceeded"),
        retryable=code.startswith(RETRYABLE_PREFIXES),
    )
