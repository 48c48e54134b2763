"""gunicorn settings for jobledger (`gunicorn -c gunicorn.conf.py wsgi:app`).

Every value can be overridden by the environment variables named below, so the Procfile
stays one line on any platform.
"""

import multiprocessing
import os
import re
import shutil
import sys
import tempfile

# PaaS convention: bind to $PORT on all interfaces; HOST narrows it (tests use 127.0.0.1).
# Behind the shipped nginx (deploy/nginx.conf), GUNICORN_BIND=unix:/run/jobledger/web.sock:
# nginx buffers whole requests, so slow clients never hold one of the few worker threads.
bind = os.environ.get("GUNICORN_BIND") or (
    f"{os.environ.get('HOST', '0.0.0.0')}:{os.environ.get('PORT', '8000')}"
)
# A master killed hard (SIGKILL, OOM) leaves its workers holding the port while they drain;
# with SO_REUSEPORT a restarted server binds it at once. gunicorn then gives each worker its
# own listener, the kernel spreading connections over them. A Unix socket needs none of it
# (a new master replaces the socket file) and refuses the option.
reuse_port = not bind.startswith("unix:")

# SQLite takes one writer at a time, so more processes than cores only adds lock waits;
# threads let a worker overlap the network with another request's commit.
workers = int(os.environ.get("WEB_CONCURRENCY", min(2 * multiprocessing.cpu_count(), 8)))
# gthread that closes its listener as soon as it stops accepting (receiver/serving/web_worker.py).
worker_class = "receiver.serving.web_worker.Worker"
threads = int(os.environ.get("GUNICORN_THREADS", 4))

# Alibaba VOD gives a callback 5 s; a worker stuck far longer than that is broken.
timeout = int(os.environ.get("GUNICORN_TIMEOUT", 30))
graceful_timeout = 30  # SIGTERM: finish requests in flight (each commit is short)
keepalive = 5

# Recycle workers now and then, so no slow leak grows for weeks.
max_requests = 20000
max_requests_jitter = 2000

# gunicorn 27 opens a control socket for `gunicornc` at ~/.gunicorn/gunicorn.ctl by default:
# one path shared by every instance of the user on the host, and none at all for a service
# user without a home. jobledger is driven by signals (docs/operations.md, "Restarts").
control_socket_disable = True

accesslog = os.environ.get("GUNICORN_ACCESSLOG", "-")
# One JSON object per line, built with json.dumps (any request target stays valid JSON), with
# `?token=` and other secret-looking query values redacted, in the access and error logs.
logger_class = "receiver.serving.access_log.AccessLogger"
errorlog = "-"
loglevel = os.environ.get("GUNICORN_LOGLEVEL", "info")

# Headers past these sizes are refused before the app sees them.
limit_request_line = 8190
limit_request_fields = 100
limit_request_field_size = 8190

# /metrics under several workers: prometheus-client's multiprocess mode keeps each worker's
# values in files in this directory. It must be set before any worker imports the client,
# and emptied when the server starts so values of an earlier run do not linger.
os.environ.setdefault(
    "PROMETHEUS_MULTIPROC_DIR",
    os.path.join(
        tempfile.gettempdir(),
        "jobledger-metrics-" + re.sub(r"[^A-Za-z0-9]+", "-", bind.split(":")[-1]).strip("-"),
    ),
)


def _check_settings() -> None:
    """Stop here, in the master, when a RECEIVER_* setting is malformed: one line naming it.

    Left to the workers, each would print a traceback of its own before gunicorn gave up.
    """
    from receiver.config import ConfigError, load

    try:
        load()
    except ConfigError as e:
        print(f"Error: {e}", file=sys.stderr)
        raise SystemExit(2) from None  # as wsgi.py: a usage error, no restart fixes it


_check_settings()


def on_starting(server):
    directory = os.environ["PROMETHEUS_MULTIPROC_DIR"]
    shutil.rmtree(directory, ignore_errors=True)
    os.makedirs(directory, exist_ok=True)


def child_exit(server, worker):
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)
