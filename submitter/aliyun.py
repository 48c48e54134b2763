"""Alibaba Cloud VOD, MPS and Live calls through the legacy `aliyun-python-sdk-*` family.

Why the legacy family and not the newer `alibabacloud_*` SDKs: the legacy core signs with
RPC signature v1.0 (HMAC-SHA1) out of the box, which is what the local fake verifies and
what every VOD/MPS/Live API reference page describes; the Tea SDKs sign with
ACS3-HMAC-SHA256 unless told otherwise. One core package serves
all three products, and its request classes are generated from the same API metadata.

Endpoints: `RECEIVER_ALIYUN_*_ENDPOINT` is `host[:port]`; with a port the call is plain
HTTP (a local fake or a proxy), without one HTTPS. Without an override the public regional
host is named explicitly, so the SDK never asks the location service where to go.
"""

# The SDK is imported where it is used, not at module level: every web worker imports this
# module for POST /api/jobs, and most never submit; the SDK's memory is paid only by those.
import importlib
import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from .calls import (
    INVALID_RESPONSE,
    Budget,
    CallFailed,
    NotConfigured,
    call_with_retries,
    network_failure,
)

if TYPE_CHECKING:
    from aliyunsdkcore.acs_exception.exceptions import ClientException, ServerException

CONNECT_TIMEOUT_S = 3.0
CREDENTIALS = ("ALIYUN_ACCESS_KEY_ID", "ALIYUN_ACCESS_KEY_SECRET")
# service -> (SDK package, API version module, endpoint setting, default host)
SERVICES = {
    "vod": ("aliyunsdkvod", "v20170321", "ALIYUN_VOD_ENDPOINT", "vod.{region}.aliyuncs.com"),
    "mps": ("aliyunsdkmts", "v20140618", "ALIYUN_MTS_ENDPOINT", "mts.{region}.aliyuncs.com"),
    "live": ("aliyunsdklive", "v20161101", "ALIYUN_LIVE_ENDPOINT", "live.aliyuncs.com"),
}
# Parameters the SDK owns; a user-supplied one would change what is signed or called.
RESERVED = frozenset(
    {
        "Action",
        "Version",
        "Format",
        "AccessKeyId",
        "Signature",
        "SignatureMethod",
        "SignatureVersion",
        "SignatureNonce",
        "SignatureType",
        "Timestamp",
        "SecurityToken",
        "RegionId",
    }
)
# Answers worth asking again (Alibaba Cloud common error codes); every Throttling* is too.
RETRYABLE = frozenset(
    {
        "ServiceUnavailable",
        "InternalError",
        "UnknownError",
        "ServiceUnavailableTemporary",
        "Gateway.Timeout",
    }
)


def wire_value(value: Any) -> str:
    """Turn a param into the text RPC APIs take: JSON for objects and lists (JobParams...)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return str(value)


def endpoint_for(config: Mapping[str, Any], service: str) -> tuple[str, bool]:
    """Return (host[:port], use HTTPS) for a service, honouring the endpoint setting."""
    _, _, setting, default = SERVICES[service]
    override = config.get(setting)
    if override:
        return override, ":" not in override
    return default.format(region=config.get("ALIYUN_REGION") or "cn-shanghai"), True


class AliyunAPI:
    """One AcsClient (one HTTP session) for one service: VOD, MPS or Live.

    Use as a context manager. `service` is a key of SERVICES.
    """

    def __init__(self, config: Mapping[str, Any], service: str):
        ak, secret = (config.get(name) for name in CREDENTIALS)
        if not ak or not secret:
            raise NotConfigured("Alibaba Cloud", CREDENTIALS)
        self._config, self.service = config, service
        from aliyunsdkcore.client import AcsClient

        self._client = AcsClient(
            ak, secret, config.get("ALIYUN_REGION") or "cn-shanghai", auto_retry=False
        )

    def __enter__(self) -> "AliyunAPI":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the pooled connections."""
        self._client.session.close()

    def call(
        self,
        action: str,
        params: Mapping[str, Any],
        *,
        budget: Budget,
        idempotent: bool = False,
        retry_throttled: bool = True,
    ) -> dict:
        """Call `action` of this client's service with `params`; return the decoded answer.

        :raises CallFailed: the provider refused, or no usable answer within the budget
        """
        package, version, _, _ = SERVICES[self.service]
        module = importlib.import_module(f"{package}.request.{version}.{action}Request")
        request_class = getattr(module, f"{action}Request")
        host, https = endpoint_for(self._config, self.service)

        from aliyunsdkcore.acs_exception.exceptions import ClientException, ServerException
        from aliyunsdkcore.http import protocol_type

        def attempt(timeout: float) -> dict:
            request = request_class()
            for key, value in params.items():
                if value is not None:
                    request.add_query_param(key, wire_value(value))
            request.set_endpoint(host)
            request.set_protocol_type(protocol_type.HTTPS if https else protocol_type.HTTP)
            request.set_connect_timeout(min(CONNECT_TIMEOUT_S, timeout))
            request.set_read_timeout(timeout)
            try:
                body = self._client.do_action_with_exception(request)
            except ServerException as e:
                raise server_failure(e) from None
            except ClientException as e:
                raise client_failure(e) from None
            try:
                answer = json.loads(body)
            except ValueError:
                answer = None
            if not isinstance(answer, dict):
                raise CallFailed(
                    INVALID_RESPONSE,
                    f"{action} answered with something other than a JSON object",
                    outcome_unknown=True,
                )
            return answer

        return call_with_retries(
            attempt, budget, idempotent=idempotent, retry_throttled=retry_throttled
        )


def server_failure(e: "ServerException") -> CallFailed:
    """Translate an error answer: the provider's own code, message and HTTP status."""
    code, status = e.get_error_code() or "UnknownError", e.get_http_status()
    throttled = code.startswith("Throttling")
    return CallFailed(
        code,
        e.get_error_msg() or "",
        status=status,
        request_id=e.get_request_id(),
        throttled=throttled,
        retryable=code in RETRYABLE or (status or 0) >= 500,
    )


def client_failure(e: "ClientException") -> CallFailed:
    """Translate an SDK-side failure; SDK.HttpError is the network."""
    if e.get_error_code() == "SDK.HttpError":
        return network_failure(e.get_error_msg())
    return CallFailed(e.get_error_code() or "SDK.Error", e.get_error_msg() or "")
