"""Structured logs: one JSON object per line, stable dotted event names, ids as fields.

Secrets never reach a log: `redact()` blanks the values of secret-looking query parameters
(`?token=...`) wherever a URL shows up in a line, in app logs and gunicorn's logs alike.
"""

import json
import logging
import re
import sys
import time
from urllib.parse import unquote_plus

REDACTED = "[redacted]"
# Query parameter names that carry secrets: RECEIVER_HOOK_TOKEN travels as `?token=`, and
# anything named like a credential is blanked too (over-redacting costs nothing).
_SECRET_NAME = re.compile(r"token|secret|passw|sign|key|auth", re.IGNORECASE)
# A query parameter anywhere in free text: a name after `?`, `&` or `;`, then `=` and a value
# up to the next separator, quote, backslash (JSON escapes) or white space.
_PARAM = re.compile(r"(?<=[?&;])([^\s?&;=#\"'\\]*)=([^\s&;#\"'\\]*)")


def _blank_secret(match: re.Match) -> str:
    name = match.group(1)
    # Werkzeug decodes names, so `?%74oken=` is the token too.
    if _SECRET_NAME.search(unquote_plus(name)) and match.group(2):
        return f"{name}={REDACTED}"
    return match.group(0)


def redact(text: str) -> str:
    """Return `text` with the values of secret-looking query parameters replaced."""
    if "=" not in text:
        return text
    return _PARAM.sub(_blank_secret, text)


_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}


class JSONFormatter(logging.Formatter):
    """Format a record as JSON: time, level, logger, event name, and any `extra` fields."""

    def format(self, record: logging.LogRecord) -> str:
        out = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
        }
        out.update((k, v) for k, v in vars(record).items() if k not in _STANDARD)
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return redact(json.dumps(out, default=str, ensure_ascii=False))


def configure(level: int = logging.INFO) -> None:
    """Send the `jobledger` loggers to stderr as JSON (once per process)."""
    logger = logging.getLogger("jobledger")
    if any(isinstance(h.formatter, JSONFormatter) for h in logger.handlers):
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JSONFormatter())
    logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False
