"""How ledger values are shown on the pages: times, durations, errors and outputs.

Pure functions over job records, no Flask. Provider values can be any JSON type (a number
where an object was expected, a list, null, NaN), so everything here accepts anything and
returns text or plain rows; escaping is left to Jinja.
"""

import json
import math
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

# Messages that say nothing beyond "it failed": Tencent's task-level errors often read
# like this while the failed subtask carries the real reason.
GENERIC_MESSAGES = frozenset(
    {"", "error", "failed", "fail", "failure", "internal error", "system error", "unknown error"}
)
GENERIC_CODES = frozenset({"30010"})  # Tencent v2: "system or unknown failure"


def parse_stamp(stamp: Any) -> datetime | None:
    """Read a ledger timestamp (ISO 8601 UTC); None for anything else."""
    if not isinstance(stamp, str) or not stamp:
        return None
    try:
        moment = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def exact(stamp: Any) -> str:
    """Show a timestamp to the second, in UTC: `2026-11-26 13:05:12 UTC`."""
    moment = parse_stamp(stamp)
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC") if moment else str(stamp or "")


def span(seconds: float) -> str:
    """Say a length of time the way people do: `45 s`, `4 min`, `2 h 5 min`, `3 d 4 h`."""
    seconds = int(abs(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes, hours, days = seconds // 60, seconds // 3600, seconds // 86400
    if minutes < 60:
        return f"{minutes} min"
    if hours < 24:
        rest = minutes % 60
        return f"{hours} h {rest} min" if rest else f"{hours} h"
    rest = hours % 24
    return f"{days} d {rest} h" if rest else f"{days} d"


def ago(stamp: Any, now: datetime) -> str:
    """Say how long ago a timestamp was: `just now`, `4 min ago`, `in 2 min`."""
    moment = parse_stamp(stamp)
    if moment is None:
        return "—"
    delta = (now - moment).total_seconds()
    if abs(delta) < 10:
        return "just now"
    return f"{span(delta)} ago" if delta > 0 else f"in {span(delta)}"


def duration(start: Any, end: Any, now: datetime) -> str:
    """How long a job took, or has been running so far (marked with `so far`)."""
    first = parse_stamp(start)
    if first is None:
        return "—"
    last = parse_stamp(end)
    if last is None:
        return f"{span((now - first).total_seconds())} so far"
    # An external job first seen here already finished: its final word came with (or,
    # by the provider's clock, before) its first, and the ledger never saw it run.
    if last <= first:
        return "—"
    return span((last - first).total_seconds())


def plural(n: int, one: str, many: str | None = None) -> str:
    """Return the noun for `n` things: `job` for one, `jobs` (or `many`) for any other."""
    return one if n == 1 else (many if many is not None else one + "s")


def epoch_ms_stamp(value: Any) -> str | None:
    """Read epoch milliseconds (MNS message times) as a ledger timestamp; None otherwise."""
    try:
        ms = int(value)
    except (TypeError, ValueError):
        return None
    if not 0 < ms < 10**14:
        return None
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def value_text(value: Any) -> str:
    """Show any provider value as text: strings as they are, everything else as JSON."""
    if value is None:
        return "—"
    if isinstance(value, str):
        return value
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    try:
        return json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)
    except (ValueError, RecursionError):
        return repr(value)


def link(value: Any) -> str | None:
    """Return the URL if it may be a link (http or https), else None."""
    if isinstance(value, str) and urlsplit(value.strip()).scheme.lower() in ("http", "https"):
        return value
    return None


_ERROR_KEYS = ("error_code", "ErrorCode", "error_message", "ErrorMessage")


def _failed(output: dict) -> bool:
    status = str(output.get("status") or output.get("Status") or "").lower()
    return any(output.get(k) for k in _ERROR_KEYS) or status in ("fail", "failed", "error")


def _output_error(output: dict) -> str:
    code = _pick(output, "error_code", "ErrorCode")
    message = _pick(output, "error_message", "ErrorMessage")
    return " — ".join(value_text(p) for p in (code, message) if p is not None)


def job_error(job: dict) -> dict | None:
    """Return the job's error as {code, message, detail}; None when it has none.

    When Tencent reports a generic task error, the first failed subtask's own code and
    message (kept in the job's outputs) become the `detail`, so the page says why.
    """
    code, message = job.get("error_code"), job.get("error_message")
    if not code and not message:
        return None
    error = {"code": code, "message": message, "detail": None}
    generic = (message or "").strip().lower() in GENERIC_MESSAGES or message == code
    if job.get("provider") == "tencent" and (generic or code in GENERIC_CODES):
        for out in job.get("outputs") or []:
            if isinstance(out, dict) and _failed(out) and _output_error(out):
                error["detail"] = f"{value_text(out.get('type'))} subtask: {_output_error(out)}"
                break
    return error


def error_line(job: dict) -> str:
    """The error on one line: `code — message (subtask detail)`, or empty."""
    error = job_error(job)
    if error is None:
        return ""
    text = " — ".join(value_text(p) for p in (error["code"], error["message"]) if p)
    return f"{text} ({error['detail']})" if error["detail"] else text


def _pick(output: dict, *keys: str) -> Any:
    for key in keys:
        if output.get(key) not in (None, ""):
            return output[key]
    return None


def _size(value: Any) -> str | None:
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
        return None if value is None else value_text(value)
    for unit in ("B", "KB", "MB", "GB"):
        if abs(value) < 1000 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return None


def _bitrate(value: Any, provider: str | None) -> str | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None if value is None else value_text(value)
    if not math.isfinite(number):
        return value_text(value)
    kbps = number / 1000 if provider == "tencent" else number  # Tencent: bit/s; Alibaba: kbit/s
    return f"{kbps:.0f} kbit/s"


def _seconds(value: Any) -> str | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None if value is None else value_text(value)
    return span(number) if math.isfinite(number) else value_text(value)


_SHOWN = {
    "definition": ("Definition", "definition"),
    "format": ("Format", "Container", "format", "container"),
    "width": ("Width", "width", "vwidth"),
    "height": ("Height", "height", "vheight"),
    "bitrate": ("Bitrate", "bitrate", "vbitrate"),
    "size": ("Size", "size"),
    "duration": ("Duration", "duration"),
    "url": ("url", "Url", "FileUrl", "FileURL"),
    "type": ("type", "Type"),
    "status": ("status", "Status"),
}


def output_rows(outputs: Any, provider: str | None) -> list[dict]:
    """Turn a job's outputs (any JSON) into table rows with the usual columns filled."""
    if not isinstance(outputs, list):
        outputs = [] if outputs is None else [outputs]
    rows = []
    for out in outputs:
        if not isinstance(out, dict):
            rows.append({"raw": value_text(out), "failed": False})
            continue
        found = {name: _pick(out, *keys) for name, keys in _SHOWN.items()}
        width, height = found["width"], found["height"]
        used = {k for keys in _SHOWN.values() for k in keys} | set(_ERROR_KEYS)
        rows.append(
            {
                "raw": None,
                "type": value_text(found["type"]) if found["type"] is not None else None,
                "definition": value_text(found["definition"]),
                "format": value_text(found["format"]),
                "resolution": f"{value_text(width)}×{value_text(height)}"
                if width is not None and height is not None
                else "—",
                "bitrate": _bitrate(found["bitrate"], provider) or "—",
                "size": _size(found["size"]) or "—",
                "duration": _seconds(found["duration"]) or "—",
                "url": value_text(found["url"]) if found["url"] is not None else None,
                "href": link(found["url"]),
                "status": value_text(found["status"]) if found["status"] is not None else None,
                "failed": _failed(out),
                "error": _output_error(out),
                "other": [(str(k), value_text(v)) for k, v in out.items() if k not in used],
            }
        )
    return rows


def job_times(job: dict, provider_start: str | None = None) -> dict:
    """Say where each of a job's times comes from, for its page.

    `submitted_at` is the ledger's clock (when it submitted the job, or first heard of
    it); `finished_at` is the provider's event time when the final notice carried one,
    else the ledger's clock when it got the final word. A provider's clock can put a finish
    before the start (a notice replayed from long ago, a job first seen after it
    finished): then the page says so instead of showing a negative duration.
    """
    external = job.get("origin") == "external"
    finish_clock = None
    if job.get("finished_at"):
        final = next(
            (
                e
                for e in job.get("events") or []
                if e.get("state_after") == job["state"] and not e.get("duplicate_of")
            ),
            None,
        )
        theirs = final is not None and final.get("occurred_at") == job["finished_at"]
        finish_clock = "the provider's event time" if theirs else "when jobledger got the word"
    start, finish = parse_stamp(job.get("submitted_at")), parse_stamp(job.get("finished_at"))
    seconds = job.get("duration_seconds")
    if seconds is not None:
        took = span(seconds)
        took_from = (
            "from the provider's own start time"
            if external and provider_start
            else ("from when it was first seen here" if external else "from its submission")
        )
    else:
        took, took_from = (None, None)
    return {
        "start_label": "first seen here" if external else "submitted",
        "provider_start": provider_start if external else None,
        "finish_clock": finish_clock,
        "finish_before_start": bool(start and finish and finish < start),
        "took": took,
        "took_from": took_from,
    }
