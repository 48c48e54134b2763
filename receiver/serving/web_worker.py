"""gunicorn's worker for jobledger: gthread that lets go of the port as soon as it stops,
and answers liveness probes itself while every request thread is taken.

A stock gthread worker that shuts down (SIGTERM, recycled after max_requests, or its master
gone) stops accepting but keeps its listening socket open until the requests it holds are
done, up to the graceful timeout. With SO_REUSEPORT (gunicorn.conf.py) every worker has its
own listener and the kernel keeps handing that socket new connections, which then wait
unanswered. This worker closes its listener the moment it stops accepting, so new
connections go to the live workers (a restarted master's among them), and a worker whose
master died shuts down as on SIGTERM, draining what it holds.

`/healthz` says the process is alive. When every thread is busy (a ledger that stalls
holds each request up to its bound), a probe queued behind them would time out and a
supervisor would restart a worker that is fine. So while all threads are taken, the
worker's own loop looks at each request before queueing it: a complete `GET /healthz`
is answered there and then, without the app, as the Flask view would answer it.
"""

import selectors
import socket
import time
from functools import partial

from gunicorn.workers.gthread import ThreadWorker

PROBE = b'{"ok":true}\n'
ANSWER = (
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
    + str(len(PROBE)).encode()
    + b"\r\nConnection: close\r\n\r\n"
    + PROBE
)
PEEK_BYTES = 8192  # gunicorn's request line and header limits are of this order


class Worker(ThreadWorker):
    """gthread, closing its listeners when it starts to shut down; probes never queue."""

    def init_process(self) -> None:
        self.busy = 0  # connections handed to the thread pool and not finished
        super().init_process()

    def is_parent_alive(self) -> bool:
        if super().is_parent_alive():
            return True
        self.alive = False  # orphaned: drain and exit, as on SIGTERM
        return False

    def set_accept_enabled(self, enabled: bool | None) -> None:
        super().set_accept_enabled(enabled)
        if not enabled and not self.alive:
            # Not only paused (too many connections): this worker takes nothing new. Closing
            # its copy leaves a listener shared with other workers open in their processes.
            for listener in self.sockets:
                listener.close()

    def enqueue_req(self, conn) -> None:
        if self.busy >= self.cfg.threads and self.alive:
            request = _peek(conn)
            if request is None:  # nothing sent yet: wait for it without taking a thread
                self._park(conn)
                return
            if _is_probe(request):
                self._answer_probe(conn, request)
                return
        self.busy += 1
        super().enqueue_req(conn)

    def finish_request(self, conn, fs) -> None:
        self.busy -= 1
        super().finish_request(conn, fs)

    def _park(self, conn) -> None:
        """Keep a new connection on the poller until its request arrives (as gthread does
        with one whose data is slow to come), bounded by the keep-alive timeout."""
        conn.sock.setblocking(False)
        conn.timeout = time.monotonic() + self.cfg.keepalive
        self.pending_conns.append(conn)
        self.poller.register(
            conn.sock, selectors.EVENT_READ, partial(self.on_pending_socket_readable, conn)
        )

    def _answer_probe(self, conn, request: bytes) -> None:
        try:
            conn.sock.recv(len(request), socket.MSG_DONTWAIT)  # take the request off
            conn.sock.send(ANSWER, socket.MSG_DONTWAIT)  # an empty send buffer takes it
        except OSError:
            pass  # the prober went away
        self.nr_conns -= 1
        conn.close()


def _peek(conn) -> bytes | None:
    """Return the bytes waiting on a connection that has not been read from, or None."""
    if conn.initialized and conn.parser is not None and conn.parser.unreader.buf.getvalue():
        return b""  # a request already read ahead: the thread pool's
    try:
        data = conn.sock.recv(PEEK_BYTES, socket.MSG_PEEK | socket.MSG_DONTWAIT)
    except BlockingIOError:
        return None
    except OSError:
        return b""  # broken: let gthread deal with it as usual
    return data


def _is_probe(request: bytes) -> bool:
    """Tell whether `request` is one complete `GET /healthz` (any query) with no body."""
    head, sep, rest = request.partition(b"\r\n\r\n")
    if not sep or rest:
        return False
    line, _, headers = head.partition(b"\r\n")
    parts = line.split(b" ")
    if len(parts) != 3 or parts[0] != b"GET" or not parts[2].startswith(b"HTTP/1."):
        return False
    if parts[1] != b"/healthz" and not parts[1].startswith(b"/healthz?"):
        return False
    lowered = headers.lower()
    return b"content-length:" not in lowered and b"transfer-encoding:" not in lowered
