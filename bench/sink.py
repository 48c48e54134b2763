"""A benchmark endpoint: takes message POSTs on loopback, answers 204, and writes one line
per message (arrival time, webhook-id, the change's timestamp) to a file.

    python -m bench.sink PORT OUTFILE

Run as a process of its own, so its work does not share a GIL with what it measures.
"""

import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Server(ThreadingHTTPServer):
    request_queue_size = 128  # a batch of messages connects side by side
    daemon_threads = True


def main(argv: list[str]) -> int:
    port, path = int(argv[0]), argv[1]
    out = open(path, "a", buffering=1)  # noqa: SIM115 - open for the process's life
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self):  # noqa: N802 - http.server's naming
            body = self.rfile.read(int(self.headers["Content-Length"]))
            arrived = time.time()
            stamp = json.loads(body)["timestamp"]
            self.send_response(204)
            self.send_header("Content-Length", "0")
            self.end_headers()
            with lock:
                out.write(f"{arrived:.6f} {self.headers['webhook-id']} {stamp}\n")

        def log_message(self, *args):
            pass

    server = Server(("127.0.0.1", port), Handler)
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
