"""Clients no HTTP library would be: raw bytes, and connections that trickle a request."""

import random
import socket
import threading
import time


def raw_request(target: str, data: bytes, timeout: float = 5) -> bytes:
    """Send raw bytes (a request no HTTP client would build); return what comes back."""
    if target.startswith("unix:"):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        address = target[5:]
    else:
        host, port = target.removeprefix("http://").rsplit(":", 1)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        address = (host, int(port))
    with sock:
        sock.settimeout(timeout)
        sock.connect(address)
        sock.sendall(data)
        answer = b""
        try:
            while chunk := sock.recv(65536):
                answer += chunk
        except TimeoutError:
            pass
        return answer


class SlowClients:
    """`count` connections that each send one more byte of a request every `interval` s.

    `headers`: the header section never ends; `body`: headers complete, the body trickles.
    A connection the server closes is opened again, so the pressure holds.
    """

    def __init__(self, address: tuple[str, int], count: int, mode: str, interval: float = 2):
        start = b"POST /hooks/aliyun/vod HTTP/1.1\r\nHost: x\r\n"
        if mode == "headers":
            self.opening = start + b"X-Slow: "
        else:
            self.opening = (
                start + b"Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n"
            )
        self.address, self.count, self.interval = address, count, interval
        self.socks: list[socket.socket | None] = [None] * count
        self.due = [0.0] * count
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _open(self, i: int) -> None:
        sock = socket.create_connection(self.address, timeout=5)
        sock.sendall(self.opening)
        self.socks[i] = sock
        self.due[i] = time.monotonic() + random.uniform(0, self.interval)

    def __enter__(self):
        for i in range(self.count):
            self._open(i)
        self.thread.start()
        return self

    def _run(self):
        while not self.stopping.wait(0.02):
            now = time.monotonic()
            for i, sock in enumerate(self.socks):
                if self.due[i] > now:
                    continue
                try:
                    sock.send(b"a")
                    self.due[i] = now + self.interval
                except OSError:
                    sock.close()
                    try:
                        self._open(i)
                    except OSError:
                        self.due[i] = now + self.interval

    def __exit__(self, *exc):
        self.stopping.set()
        self.thread.join(10)
        for sock in self.socks:
            if sock is not None:
                sock.close()
