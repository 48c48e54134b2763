"""What every provider client shares: its errors, the time budget, and the retry loop.

The SDKs are told not to retry (the legacy Alibaba SDK retries nothing for vod/mts/live
anyway, and Tencent's retries only if given a retryer), so that one loop here decides, the
same way for every provider, what may be tried again within the time a caller can wait:

* throttling, 5xx-class answers and network errors that happened before the request left
  this machine are retried with exponential backoff and jitter;
* a business refusal (a 4xx-class answer) is never retried: asking again changes nothing;
* a request that may have reached the provider without an answer coming back (read timeout,
  connection dropped after sending) is not retried for a submission, because a second one
  could start a second job. Its outcome is unknown, and the caller records that.
"""

import logging
import random
import re
import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol, Self

INTERACTIVE_BUDGET_S = 5.0  # what a person at a terminal or an API client waits for a submit
MIN_ATTEMPT_S = 0.25  # do not start an attempt with less time than this left
BACKOFF_BASE_S = 0.2
BACKOFF_CAP_S = 2.0
NETWORK_ERROR = "NetworkError"  # codes jobledger sets itself; every other code is the provider's
OUTCOME_UNKNOWN = "OutcomeUnknown"
INVALID_RESPONSE = "InvalidResponse"
log = logging.getLogger("jobledger.submitter")

# How `requests` (both the real one and the copy vendored in aliyunsdkcore) words failures
# that happen after the request was written: the provider may have received it.
_AFTER_SENDING = re.compile(
    r"Read timed out|Connection aborted|RemoteDisconnected|Connection reset by peer"
    r"|IncompleteRead|ChunkedEncodingError|Connection broken",
    re.IGNORECASE,
)


class ProviderClient(Protocol):
    """What every provider API client is: one session, calls with a time budget, close().

    It is also a context manager whose exit closes it.

    Implemented by `aliyun.AliyunAPI` (one per service), `tencent_api.TencentAPI` and
    `tencent_v2.TencentV2`; `operations.CLIENTS` names them. Adding a provider API means
    writing one more class of this shape.
    """

    def call(
        self,
        action: str,
        params: Mapping[str, Any],
        *,
        budget: "Budget",
        idempotent: bool = False,
        retry_throttled: bool = True,
    ) -> dict:
        """Call `action` with `params`; return the decoded answer.

        :param idempotent: the call may be repeated after a network error past sending
        :param retry_throttled: retry a throttling answer within the budget
        :raises CallFailed: the provider refused, or no usable answer within the budget
        """
        ...

    def close(self) -> None:
        """Release the client's connections."""
        ...

    def __enter__(self) -> Self: ...

    def __exit__(self, *exc_info: object) -> None: ...


class UsageError(ValueError):
    """The operation or its params are wrong; nothing was recorded or sent."""


class NotConfigured(RuntimeError):
    """The provider's credentials are not configured; the message names the settings."""

    def __init__(self, what: str, settings: tuple[str, ...]):
        names = " and ".join(f"RECEIVER_{s}" for s in settings)
        super().__init__(f"{what} credentials are not configured: set {names}")
        self.settings = settings


class CallFailed(Exception):
    """A provider call did not succeed.

    :param code: the provider's error code, or NetworkError / OutcomeUnknown / InvalidResponse
    :param status: the provider's HTTP status, when it answered with one
    :param retryable: asking again may succeed (throttling, 5xx, network before sending)
    :param throttled: the provider said to slow down
    :param outcome_unknown: the request may have reached the provider; no answer came back
    """

    def __init__(
        self,
        code: str,
        message: str,
        *,
        status: int | None = None,
        request_id: str | None = None,
        retryable: bool = False,
        throttled: bool = False,
        outcome_unknown: bool = False,
        body: dict | None = None,
    ):
        super().__init__(f"{code}: {message}")
        self.code, self.message, self.status = code, message, status
        self.request_id, self.body = request_id, body
        self.retryable = retryable or throttled
        self.throttled, self.outcome_unknown = throttled, outcome_unknown

    def as_response(self) -> dict:
        """Describe the failure as the `response` recorded on the job's timeline."""
        error: dict[str, str | int] = {"Code": self.code, "Message": self.message}
        if self.status is not None:
            error["HttpStatus"] = self.status
        if self.request_id:
            error["RequestId"] = self.request_id
        return {"Error": error, **({"Body": self.body} if self.body else {})}


def network_failure(message: str) -> CallFailed:
    """Classify a transport error by whether the request may already have been sent."""
    # Drop the request URL that `requests` quotes: long, and of no use to a reader.
    message = re.sub(r" with url: \S+", "", " ".join(str(message).split()))[:500]
    if _AFTER_SENDING.search(message):
        return CallFailed(
            OUTCOME_UNKNOWN,
            "no answer after the request was sent, so the provider may have accepted it: "
            + message,
            retryable=True,
            outcome_unknown=True,
        )
    return CallFailed(NETWORK_ERROR, message, retryable=True)


class Budget:
    """A deadline shared by all attempts of one call."""

    def __init__(self, seconds: float, clock: Callable[[], float] = time.monotonic):
        self.seconds, self._clock = seconds, clock
        self._end = clock() + seconds

    def remaining(self) -> float:
        """Return the seconds left, never negative."""
        return max(0.0, self._end - self._clock())


def backoff(attempt: int, rng: Callable[[], float] = random.random) -> float:
    """Return the wait before retry number `attempt` (0-based): exponential, equal jitter."""
    ceiling = min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2**attempt)
    return ceiling / 2 + rng() * ceiling / 2


def call_with_retries(
    attempt: Callable[[float], Any],
    budget: Budget,
    *,
    idempotent: bool,
    retry_throttled: bool = True,
    sleep: Callable[[float], None] = time.sleep,
) -> Any:
    """Run `attempt(timeout)` until it succeeds, fails for good, or the budget runs out.

    :param attempt: makes one call with at most `timeout` seconds; raises CallFailed
    :param idempotent: a call that may have reached the provider may be repeated (reads)
    :param retry_throttled: False for background polls, which back off a whole API instead
    :raises CallFailed: the last failure
    """
    retries = 0
    while True:
        timeout = budget.remaining()
        try:
            return attempt(timeout)
        except CallFailed as e:
            if (
                not e.retryable
                or (e.outcome_unknown and not idempotent)
                or (e.throttled and not retry_throttled)
            ):
                raise
            delay = backoff(retries)
            if budget.remaining() - delay < MIN_ATTEMPT_S:
                raise
            log.warning(
                "submitter.retry",
                extra={"code": e.code, "retry": retries + 1, "delay_s": round(delay, 3)},
            )
            sleep(delay)
            retries += 1
