"""How jobledger sends anything out: one HTTP POST and one AWS publish, used by alerts and
by endpoint delivery alike.

`post` sends one JSON body and says what happened, never raising: the status code, or
the error (timeout, refused connection, TLS, an address not allowed), how long it took,
and the first bytes of the answer. One deadline covers the whole exchange, from the
name lookup to the last byte read. Redirects are never followed (a 3xx is a failure).
The host is resolved once; every address it resolves to is checked (unless private
addresses are allowed), and the connection is made to a checked address, so a name that
resolves differently a moment later (DNS rebinding) cannot reach an internal service.

`publish` sends one message to an SNS topic (`arn:aws:sns:...`) or an SQS queue
(`https://sqs.<region>.amazonaws.com/...`) with boto3, whose own AWS_* variables apply.
"""

import http.client
import ipaddress
import os
import re
import socket
import ssl
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit

READ_CAP = 64 * 1024  # bytes of an answer read at most; the rest is not waited for
EXCERPT_CHARS = 1024
USER_AGENT = "jobledger"
_SQS_URL = re.compile(r"^https://sqs\.([a-z0-9-]+)\.amazonaws\.com(\.cn)?/[0-9]+/[\w.-]+$")
_SNS_ARN = re.compile(r"^arn:aws(-[a-z-]+)?:sns:([a-z0-9-]+):[0-9]+:[\w.-]+$")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


@dataclass(frozen=True)
class Answer:
    """What one attempt to send came to."""

    status_code: int | None
    error: str | None
    duration_ms: int
    excerpt: str | None = None
    retry_after: float | None = None  # seconds, from a Retry-After header

    @property
    def ok(self) -> bool:
        """Tell whether the receiver took it (a 2xx, or an accepted publish)."""
        return self.error is None


class NotAllowed(ValueError):
    """An address the sender may not reach (loopback, private, link-local...)."""


def kind_of(url: str) -> str:
    """Return how a target is reached: `sns`, `sqs` or `http`.

    :raises ValueError: saying what is wrong with it
    """
    if url.startswith("arn:"):
        if not _SNS_ARN.match(url):
            raise ValueError("an ARN must be an SNS topic: arn:aws:sns:<region>:<account>:<name>")
        return "sns"
    if _SQS_URL.match(url):
        return "sqs"
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("expected an http:// or https:// URL, an SNS topic ARN or an SQS URL")
    try:
        parts.port  # noqa: B018 - raises on a port out of range
    except ValueError:
        raise ValueError("the port is not a number from 1 to 65535") from None
    if any(c.isspace() for c in url):
        raise ValueError("a URL holds no spaces")
    return "http"


def is_public(address: str) -> bool:
    """Tell whether an IP address is one on the public Internet."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = ip.ipv4_mapped or ip.sixtofour
        if embedded is None and ip in _NAT64:
            embedded = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if embedded is not None:
            ip = embedded
    return ip.is_global and not ip.is_multicast


def resolve(host: str, port: int, allow_private: bool) -> list[tuple]:
    """Look a host up once; return its addresses (getaddrinfo tuples).

    :raises NotAllowed: one of them is not public and private addresses are not allowed
    :raises OSError: the name does not resolve
    """
    found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    if not allow_private:
        for *_, sockaddr in found:
            if not is_public(str(sockaddr[0])):
                raise NotAllowed(f"{host} resolves to a non-public address ({sockaddr[0]})")
    return found


def check_target(url: str, allow_private: bool) -> str:
    """Check an endpoint URL as it is registered; return its kind.

    :raises ValueError: the URL is malformed, does not resolve, or reaches an address
      that is not allowed (NotAllowed)
    """
    kind = kind_of(url)
    if kind == "http":
        parts = urlsplit(url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
        try:
            resolve(parts.hostname or "", port, allow_private)
        except (OSError, UnicodeError):
            raise ValueError(f"the host {parts.hostname} does not resolve") from None
    return kind


_tls_context: ssl.SSLContext | None = None
_tls_lock = threading.Lock()


def _context() -> ssl.SSLContext:
    """Return the one TLS context (loading the CA store costs tens of milliseconds)."""
    global _tls_context
    with _tls_lock:
        if _tls_context is None:
            _tls_context = ssl.create_default_context()
        return _tls_context


class _PinnedConnection(http.client.HTTPConnection):
    """An HTTP(S) connection over a socket already connected to a checked address.

    The Host header and the TLS server name and certificate check use the URL's host."""

    def __init__(self, host: str, port: int, sock: socket.socket, tls: bool, timeout: float):
        super().__init__(host, port, timeout=timeout)
        self._pinned, self._tls = sock, tls
        self.default_port = 443 if tls else 80  # the Host header names only another port

    def connect(self) -> None:
        if self._tls:
            self.sock = _context().wrap_socket(self._pinned, server_hostname=self.host)
        else:
            self.sock = self._pinned


def _connect(found: list[tuple], deadline: float) -> socket.socket:
    """Connect to the first address that answers, within the deadline."""
    last: OSError = OSError("no address")
    for family, kind, proto, _, sockaddr in found:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("timed out")
        sock = socket.socket(family, kind, proto)
        sock.settimeout(remaining)
        try:
            sock.connect(sockaddr)
            return sock
        except OSError as e:
            sock.close()
            last = e
    raise last


def post(
    url: str,
    body: bytes,
    headers: Mapping[str, str],
    *,
    timeout: float,
    allow_private: bool,
) -> Answer:
    """POST a JSON body to `url`; return what happened (never raises for the network)."""
    start = time.monotonic()
    deadline = start + timeout
    parts = urlsplit(url)
    tls = parts.scheme == "https"
    port = parts.port or (443 if tls else 80)
    conn = None
    try:
        found = resolve(parts.hostname or "", port, allow_private)
        sock = _connect(found, deadline)
        conn = _PinnedConnection(parts.hostname or "", port, sock, tls, deadline - start)
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        all_headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT, **headers}
        conn.request("POST", path, body=body, headers=all_headers)
        response = conn.getresponse()
        raw = _read(response, conn, deadline)
        return _answer(response, raw, start)
    except NotAllowed as e:
        return Answer(None, f"refused: {e}", _ms(start))
    except TimeoutError:
        return Answer(None, f"timed out after {timeout:g} s", _ms(start))
    except ssl.SSLError as e:
        return Answer(None, f"TLS error: {e.reason or e}", _ms(start))
    except ConnectionRefusedError:
        return Answer(None, "connection refused", _ms(start))
    except (http.client.HTTPException, OSError, UnicodeError, ValueError) as e:
        return Answer(None, f"{type(e).__name__}: {e}"[:300], _ms(start))
    finally:
        if conn is not None:
            conn.close()


def _read(response: http.client.HTTPResponse, conn: Any, deadline: float) -> bytes:
    """Read the answer up to READ_CAP bytes, each read bounded by what is left of the
    deadline, so a receiver trickling bytes cannot hold the attempt past it."""
    chunks, size = [], 0
    while size < READ_CAP:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("timed out")
        if conn.sock is not None:
            conn.sock.settimeout(remaining)
        chunk = response.read1(min(8192, READ_CAP - size))
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


def _answer(response: http.client.HTTPResponse, raw: bytes, start: float) -> Answer:
    code = response.status
    excerpt = raw.decode("utf-8", "replace")[:EXCERPT_CHARS] or None
    error = None
    if not 200 <= code < 300:
        error = f"HTTP {code}"
        if 300 <= code < 400:
            error += ": a redirect, not followed"
    retry_after = _retry_after(response.headers.get("Retry-After"))
    return Answer(code, error, _ms(start), excerpt, retry_after)


def _retry_after(value: str | None) -> float | None:
    """Read Retry-After: seconds, or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value[:9])
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(moment.timestamp() - time.time(), 0.0)


def _ms(start: float) -> int:
    return int((time.monotonic() - start) * 1000)


# -- AWS -------------------------------------------------------------------------------------

_clients: dict[tuple, Any] = {}
_clients_lock = threading.Lock()


def _client(service: str, region: str | None, timeout: float) -> Any:
    """Return a cached boto3 client (creating one costs tens of milliseconds).

    Keyed on the endpoint override too, so a changed AWS_ENDPOINT_URL_* takes effect.
    """
    # boto3 (10 MiB resident) is imported here: web workers load this module, only the
    # senders publish.
    import boto3
    from botocore.config import Config

    override = os.environ.get(f"AWS_ENDPOINT_URL_{service.upper()}") or os.environ.get(
        "AWS_ENDPOINT_URL"
    )
    key = (service, region, timeout, override)
    with _clients_lock:
        if key not in _clients:
            config = Config(
                connect_timeout=timeout, read_timeout=timeout, retries={"max_attempts": 1}
            )
            _clients[key] = boto3.client(service, region_name=region, config=config)
        return _clients[key]


def publish(
    target: str,
    body: str,
    *,
    timeout: float,
    subject: str | None = None,
    attributes: Mapping[str, str] | None = None,
    group_id: str | None = None,
    dedup_id: str | None = None,
) -> Answer:
    """Send `body` to an SNS topic ARN or an SQS queue URL; return what happened.

    A FIFO topic or queue (its name ends in `.fifo`) gets `group_id` as MessageGroupId
    and `dedup_id` as MessageDeduplicationId.
    """
    from botocore.exceptions import BotoCoreError, ClientError

    start = time.monotonic()
    sns = target.startswith("arn:")
    region = target.split(":")[3] if sns else urlsplit(target).hostname.split(".")[1]  # type: ignore[union-attr]
    args: dict[str, Any] = {}
    if attributes:
        args["MessageAttributes"] = {
            k: {"DataType": "String", "StringValue": v} for k, v in attributes.items()
        }
    if target.endswith(".fifo"):
        args.update(MessageGroupId=group_id, MessageDeduplicationId=dedup_id)
    try:
        if sns:
            if subject:
                args["Subject"] = subject[:100]
            client = _client("sns", region, timeout)
            client.publish(TopicArn=target, Message=body, **args)
        else:
            client = _client("sqs", region, timeout)
            client.send_message(QueueUrl=target, MessageBody=body, **args)
    except (BotoCoreError, ClientError) as e:
        what = "SNS publish" if sns else "SQS send"
        return Answer(None, f"{what} failed: {e}"[:500], _ms(start))
    return Answer(None, None, _ms(start))
