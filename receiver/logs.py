"""Structured logs: one JSON object per line, stable dotted event names, ids as fields.

Secrets never reach a log: `redact()` blanks the values of secret-looking query parameters
(`?token=...`) wherever a URL shows up in a line, in app logs and gunicorn's logs alike;
and, whatever surrounds it (`?token%3D...`, `;token=...`, a path segment, a header), the
value of every configured secret, written as it is, percent-encoded once or twice, or
escaped inside JSON text.
"""

import json
import logging
import os
import re
import sys
import time
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import unquote_plus, urlsplit

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


class _Secrets:
    """The configured secrets' values, and one pattern matching any way a line may write them."""

    values: tuple[str, ...] = ()
    pattern: re.Pattern | None = None


_secrets = _Secrets()


def _written(char: str) -> str:
    """A pattern for one character as a log line may hold it: itself, JSON-escaped, or
    percent-encoded (hex in either case, `%25` for a second encoding, `+` for a space)."""
    forms = {json.dumps(char)[1:-1], json.dumps(char, ensure_ascii=False)[1:-1], char}
    percent = "".join(
        f"%(?:25)?[{h[0]}{h[0].lower()}][{h[1]}{h[1].lower()}]"
        for h in (f"{b:02X}" for b in char.encode("utf-8", "surrogatepass"))
    )
    alternatives = [re.escape(f) for f in sorted(forms, key=len, reverse=True)] + [percent]
    if char == " ":
        alternatives.append(r"\+")
    return "(?:" + "|".join(alternatives) + ")"


def remember_secrets(values: Iterable[str]) -> None:
    """Redact these values from every line logged from now on (in this process)."""
    known = set(_secrets.values) | {v for v in values if isinstance(v, str) and v}
    if known == set(_secrets.values):
        return
    ordered = sorted(known, key=len, reverse=True)  # a longer secret first, whole
    _secrets.pattern = re.compile(
        "|".join("".join(_written(c) for c in value) for value in ordered)
    )
    _secrets.values = tuple(ordered)


def secrets_of(config: Mapping[str, Any], names: Iterable[str]) -> list[str]:
    """Return the values of the secret settings `names` (lists flattened), and the password
    of a `postgresql://` RECEIVER_DATABASE."""
    out: list[Any] = []
    for name in names:
        value = config.get(name)
        out += value if isinstance(value, list) else [value] if isinstance(value, str) else []
    database = config.get("DATABASE")
    if isinstance(database, str) and "://" in database:
        try:
            out.append(urlsplit(database).password or "")
        except ValueError:
            pass
    return [v for v in out if isinstance(v, str) and v]


def remember_secrets_from_environ(environ: Mapping[str, str] = os.environ) -> None:
    """Remember the secrets set in RECEIVER_* variables (for gunicorn's own processes)."""
    from .config import PREFIX, SECRETS

    values = secrets_of({"DATABASE": environ.get(PREFIX + "DATABASE", "")}, ())
    for name in SECRETS:
        raw = environ.get(PREFIX + name, "")
        values += [raw.strip(), *(v.strip() for v in raw.split(","))]  # lists: each item too
    remember_secrets(values)


def _may_hold_a_secret(text: str) -> bool:
    # Cheap tests first: every line passes here, and almost none holds a secret.
    if any(value in text for value in _secrets.values):
        return True
    return "%" in text or "\\" in text or "+" in text


def redact(text: str) -> str:
    """Return `text` with the values of secret-looking query parameters, and every
    configured secret's value, replaced."""
    if "=" in text:
        text = _PARAM.sub(_blank_secret, text)
    if _secrets.pattern is not None and _may_hold_a_secret(text):
        text = _secrets.pattern.sub(REDACTED, text)
    return text


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
