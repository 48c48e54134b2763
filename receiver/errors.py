"""App-level error handlers: JSON under /api, /hooks, /metrics and /healthz; HTML elsewhere.

Blueprint-level 404 handlers do not see unmatched URLs, so these are registered on the app.
Every JSON error has one shape: {"ok": false, "error": "...", "status": N}; a refused
parameter is also named as `parameter`.
"""

import logging

from flask import Flask, jsonify, render_template_string, request
from werkzeug.exceptions import HTTPException, InternalServerError, ServiceUnavailable

from store.errors import LedgerUnavailable, classify, driver_errors

from .db import LedgerNotReady, forget_ledger
from .params import BadParameter

log = logging.getLogger("jobledger.errors")
JSON_PREFIXES = ("/api", "/hooks", "/metrics", "/healthz")

_PAGE = """<!doctype html><html lang="en"><meta charset="utf-8">
<title>{{ status }} · jobledger</title>
<body style="font-family: system-ui, sans-serif; margin: 2rem"><h1>{{ status }} {{ name }}</h1>
<p>{{ message }}</p><p><a href="/">Dashboard</a></p></body></html>"""


def error_response(status: int, message: str, headers=None, **extra):
    """Answer an error in the shape the path calls for."""
    if request.path.startswith(JSON_PREFIXES):
        response = jsonify(ok=False, error=message, status=status, **extra)
    else:
        name = _name(status)
        page = render_template_string(_PAGE, status=status, name=name, message=message)
        response = Flask.response_class(page, mimetype="text/html")
    response.status_code = status
    for key, value in headers or ():
        if key.lower() != "content-type":
            response.headers[key] = value
    return response


def _name(status: int) -> str:
    from werkzeug.http import HTTP_STATUS_CODES

    return HTTP_STATUS_CODES.get(status, "Error")


def _http_error(e: HTTPException):
    extra = {"parameter": e.parameter} if isinstance(e, BadParameter) else {}
    code = e.code or 500
    return error_response(code, e.description or _name(code), e.get_headers(), **extra)


def _database_error(e: Exception):
    # A transient failure (busy, locked, disk full, I/O error, read-only, the file replaced
    # or deleted) is the ledger being unable to take the write right now: 503, so the
    # sender retries and nothing half-written is acknowledged. The thread's connection is
    # dropped, so the next request opens the file afresh (a read-only one would stay so).
    unavailable = classify(e)
    forget_ledger()
    if unavailable is not None:
        log.error(
            "ledger.unavailable",
            extra={"error": str(unavailable), "reason": unavailable.reason, "path": request.path},
        )
        return error_response(503, str(unavailable), [("Retry-After", "5")])
    log.error("ledger.error", exc_info=True, extra={"path": request.path})
    return error_response(500, "internal error in the ledger")


def _not_ready(e: LedgerNotReady):
    log.error("ledger.not-ready", extra={"error": str(e)})
    return _http_error(ServiceUnavailable(str(e)))


def _unexpected(e: Exception):
    if isinstance(e, HTTPException):
        return _http_error(e)
    log.error("app.unhandled", exc_info=True, extra={"path": request.path})
    return _http_error(InternalServerError("internal error"))


def init_app(app: Flask) -> None:
    """Register the handlers on the app (so unmatched URLs are covered too)."""
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(LedgerNotReady, _not_ready)
    for error_class in driver_errors():  # sqlite3.Error, and psycopg.Error when installed
        app.register_error_handler(error_class, _database_error)
    app.register_error_handler(LedgerUnavailable, _database_error)
    app.register_error_handler(Exception, _unexpected)
