"""gunicorn settings for jobledger (`gunicorn -c gunicorn.conf.py wsgi:app`).

Every value can be overridden by the environment variables named below, so the Procfile
stays one line on any platform.
"""

import multiprocessing
import os
import shutil
import tempfile

# PaaS convention: bind to $PORT on all interfaces; HOST narrows it (tests use 127.0.0.1).
bind = f"{os.environ.get('HOST', '0.0.0.0')}:{os.environ.get('PORT', '8000')}"

# SQLite takes one writer at a time, so more processes than cores only adds lock waits;
# threads let a worker overlap the network with another request's commit.
workers = int(os.environ.get("WEB_CONCURRENCY", min(2 * multiprocessing.cpu_count(), 8)))
worker_class = "gthread"
threads = int(os.environ.get("GUNICORN_THREADS", 4))

# Alibaba VOD gives a callback 5 s; a worker stuck far longer than that is broken.
timeout = int(os.environ.get("GUNICORN_TIMEOUT", 30))
graceful_timeout = 30  # SIGTERM: finish requests in flight (each commit is short)
keepalive = 5

# Recycle workers now and then, so no slow leak grows for weeks.
max_requests = 20000
max_requests_jitter = 2000

accesslog = os.environ.get("GUNICORN_ACCESSLOG", "-")
access_log_format = (
    '{"remote": "%(h)s", "request": "%(r)s", "status": %(s)s, "bytes": %(B)s, "ms": %(M)s}'
)
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
    os.path.join(tempfile.gettempdir(), f"jobledger-metrics-{bind.split(':')[-1]}"),
)


def on_starting(server):
    directory = os.environ["PROMETHEUS_MULTIPROC_DIR"]
    shutil.rmtree(directory, ignore_errors=True)
    os.makedirs(directory, exist_ok=True)


def child_exit(server, worker):
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)
