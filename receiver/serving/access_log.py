"""gunicorn's logger for jobledger: JSON access lines and secrets redacted in every line.

`gunicorn.conf.py` names it as `logger_class`. An access line is built with `json.dumps`,
so any request target (quotes, backslashes, control characters, bytes that are not UTF-8)
still gives one valid JSON object, and the values of secret-looking query parameters
(`?token=`) and of every configured secret (receiver/logs.py) are replaced before the
line is written. gunicorn's error log gets the same
redaction: it quotes request targets when a request fails.
"""

import json
import logging
import os
import time
import traceback

from gunicorn.glogging import Logger

from ..logs import redact, remember_secrets_from_environ


class _RedactFilter(logging.Filter):
    """Redact a record's final text (message and traceback) before any handler sees it."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken format: logging reports it in the handler, as usual
            return True
        clean = redact(message)
        if clean != message:
            record.msg, record.args = clean, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        return True


class _Clock:
    """The current UTC second as ISO 8601 text, formatted once per second, not per line."""

    second = -1
    text = ""

    def now(self) -> str:
        now = time.time()
        second = int(now)
        if second != self.second:
            # Two threads may both reformat at a second's turn: harmless, same text.
            self.text, self.second = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)), second
        return f"{self.text}.{int(now % 1 * 1000):03d}Z"


class AccessLogger(Logger):
    """gunicorn's Logger with one JSON object per access line and redacted secrets."""

    def __init__(self, cfg):
        self._clock = _Clock()
        super().__init__(cfg)

    def setup(self, cfg):
        super().setup(cfg)
        remember_secrets_from_environ()  # the app, where it runs, adds its settings' values
        if not any(isinstance(f, _RedactFilter) for f in self.error_log.filters):
            self.error_log.addFilter(_RedactFilter())

    def info(self, msg, *args, **kwargs):
        """Log at INFO; give gunicorn's "Listening at" line the address it left blank."""
        # With reuse_port the master holds no listener (each worker binds its own), so the
        # list of listeners gunicorn prints is empty: name the configured address instead.
        if msg.startswith("Listening at:") and args and not args[0]:
            args = (listen_text(self.cfg.address), *args[1:])
        super().info(msg, *args, **kwargs)

    def access(self, resp, req, environ, request_time):
        """Write one access line: who, what, the answer, and how long it took."""
        if not self.access_log_enabled:
            return
        try:
            self.access_log.info(access_line(resp, environ, request_time, self._clock.now()))
        except Exception:
            self.error(traceback.format_exc())


def listen_text(addresses) -> str:
    """Say where gunicorn listens, as gunicorn names a listener: `http://host:port`, `unix:path`."""
    out = []
    for address in addresses:
        if isinstance(address, tuple):
            host, port = address[0], address[1]
            out.append(f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}")
        else:
            out.append(f"unix:{os.fsdecode(address)}")
    return ",".join(out)


def access_line(resp, environ: dict, request_time, ts: str) -> str:
    """Return the JSON text of one access line (`ms` is the time spent on the request)."""
    status = resp.status
    if isinstance(status, str):
        status = status.split(None, 1)[0]
    try:
        status = int(status)
    except (TypeError, ValueError):
        pass  # a status gunicorn could not parse stays as text; the line is still JSON
    target = environ.get("RAW_URI") or environ.get("PATH_INFO", "")
    line = {
        "ts": ts,
        "remote": environ.get("REMOTE_ADDR"),
        "request": f"{environ.get('REQUEST_METHOD')} {target} {environ.get('SERVER_PROTOCOL')}",
        "status": status,
        "bytes": getattr(resp, "sent", None),
        "ms": request_time.seconds * 1000 + request_time.microseconds // 1000,
        "forwarded_for": environ.get("HTTP_X_FORWARDED_FOR"),
        "agent": environ.get("HTTP_USER_AGENT"),
    }
    return redact(json.dumps(line))
