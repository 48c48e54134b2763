"""Local endpoints for outbound event tests: real HTTP servers on loopback that check every
signature, and can fail, time out, redirect, answer 410 or 429, or answer slowly.

Each message's signature is checked twice, by implementations other than the one that
signs (the `standardwebhooks` package): the `svix` package's `Webhook.verify`, and a few
lines of hmac written here from the Standard Webhooks specification. (svix 2.9.1 wraps
`standardwebhooks` for the HMAC itself, so the second check is the independent one.)
"""

import base64
import hashlib
import hmac
import json
import threading
import time
from collections import defaultdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from svix.webhooks import Webhook, WebhookVerificationError


def spec_verify(secret: str, headers: dict, body: bytes) -> bool:
    """Check a Standard Webhooks signature from the spec alone: HMAC-SHA256, keyed with the
    Base64-decoded secret after `whsec_`, over `<id>.<timestamp>.<body>`; any of the
    space-separated `v1,` signatures may match."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{headers['webhook-id']}.{headers['webhook-timestamp']}.".encode() + body
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    given = [s.split(",", 1) for s in headers["webhook-signature"].split(" ")]
    return any(v == "v1" and hmac.compare_digest(sig, expected) for v, sig in given)


def svix_verify(secret: str, headers: dict, body: bytes) -> bool:
    try:
        Webhook(secret).verify(body, headers)
    except WebhookVerificationError:
        return False
    return True


class _Server(ThreadingHTTPServer):
    # A batch of messages connects side by side: a listen backlog of 5 (the default) drops
    # connections where a real web server would not.
    request_queue_size = 128


class Receiver:
    """An application's endpoint: takes message POSTs and keeps what it got.

    `plan` is a list of behaviours used one per request, then `default`: `ok`, `fail`
    (500), `gone` (410), `throttle` (429 with Retry-After: `retry_after`), `redirect` (302
    to `redirect_to`), `slow` (answers ok after `delay` s), `hang` (never answers in time).
    """

    def __init__(self, secret: str | None = None, default: str = "ok"):
        self.secret, self.default = secret, default
        self.plan: list[str] = []
        self.delay, self.retry_after, self.redirect_to = 0.5, "60", "http://127.0.0.1:9/"
        self.requests: list[dict] = []  # every request, as received
        self.accepted: list[dict] = []  # bodies answered 2xx, in the order answered
        self.started = threading.Event()  # a request has come in
        self.lock = threading.Lock()
        me = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers["Content-Length"]))
                me.started.set()
                me.handle(self, body)

            def log_message(self, *args):
                pass

        self.server = _Server(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_port}/hooks"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def handle(self, handler: BaseHTTPRequestHandler, body: bytes) -> None:
        headers = {k.lower(): v for k, v in handler.headers.items()}
        with self.lock:
            mode = self.plan.pop(0) if self.plan else self.default
            record = {"headers": headers, "body": body, "mode": mode, "at": time.time()}
            if self.secret is not None and "webhook-signature" in headers:
                record["spec_ok"] = spec_verify(self.secret, headers, body)
                record["svix_ok"] = svix_verify(self.secret, headers, body)
            self.requests.append(record)
        if mode in ("slow", "hang"):
            time.sleep(self.delay if mode == "slow" else 30)
        status, extra = {
            "ok": (200, {}),
            "slow": (200, {}),
            "hang": (200, {}),
            "fail": (500, {}),
            "gone": (410, {}),
            "throttle": (429, {"Retry-After": self.retry_after}),
            "redirect": (302, {"Location": self.redirect_to}),
        }[mode]
        answer = b'{"thanks": true}' if status == 200 else b"no thanks"
        try:
            handler.send_response(status)
            for key, value in extra.items():
                handler.send_header(key, value)
            handler.send_header("Content-Length", str(len(answer)))
            handler.end_headers()
            handler.wfile.write(answer)
        except OSError:
            return  # the sender gave up (a timeout): not accepted
        if status == 200:
            with self.lock:
                self.accepted.append(json.loads(body))

    def sequences(self) -> dict[str, list[int]]:
        """Return the sequences accepted per job, in the order they were accepted."""
        out: dict[str, list[int]] = defaultdict(list)
        with self.lock:
            for message in self.accepted:
                out[message["data"]["id"]].append(message["data"]["sequence"])
        return dict(out)

    def close(self):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)
