"""What every HTML page of the console shares: ops authentication, the CSRF check on every
POST, security headers, error pages (`guard`, for each blueprint of pages) and the template
helpers (`init_app`).

Pages are reached with HTTP Basic credentials the browser resends by itself, so a
cross-site form could otherwise act with them: every action is a POST form with a
double-submit CSRF token (a random cookie echoed in a hidden field); what a browser marks
as cross-site is refused before that, for the whole ops surface (receiver/auth.py).
"""

import hmac
import json
import secrets
from datetime import UTC, datetime

from flask import Blueprint, Flask, g, render_template, request, url_for
from werkzeug.exceptions import Forbidden, HTTPException

from .. import params
from ..auth import require_ops
from ..providers import InvalidPayload
from ..providers.aliyun import mns as queue
from . import display

CSRF_COOKIE = "jobledger_csrf"
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self';"
    " connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)


def guard(bp: Blueprint) -> Blueprint:
    """Give a blueprint of HTML pages the console's rules; return it.

    Ops authentication (HTTP Basic accepted), the CSRF check on every POST, the security
    headers, and errors shown in the console's own layout.
    """
    bp.before_request(_ops_only)
    bp.after_request(_set_csrf_cookie)
    bp.register_error_handler(HTTPException, _error_page)
    return bp


def init_app(app: Flask) -> None:
    """Make the template helpers (times, links, the CSRF token) available to every page."""
    app.context_processor(_template_helpers)


def _ops_only():
    require_ops(allow_basic=True)
    if request.method == "POST":
        _check_csrf()


def _check_csrf() -> None:
    cookie = request.cookies.get(CSRF_COOKIE, "")
    field = request.form.get("csrf", "")
    if not cookie or not hmac.compare_digest(cookie.encode(), field.encode()):
        raise Forbidden("missing or wrong CSRF token: reload the page and try again")


def _set_csrf_cookie(response):
    token = g.get("csrf_token")
    if token and request.cookies.get(CSRF_COOKIE) != token:
        response.set_cookie(
            CSRF_COOKIE, token, httponly=True, samesite="Strict", secure=request.is_secure
        )
    response.headers.setdefault("Content-Security-Policy", CSP)
    response.headers.setdefault("X-Frame-Options", "DENY")
    return response


def _error_page(e: HTTPException):
    """Show a page's error in the console's own layout, with a way back to the job."""
    job_id = (request.view_args or {}).get("job_id")
    back = url_for("pages.job_detail", job_id=job_id) if job_id and e.code != 404 else None
    body = render_template("error.html", error=e, back=back)
    headers = [(k, v) for k, v in e.get_headers() if k.lower() != "content-type"]
    return body, e.code or 500, headers


def _template_helpers():
    def csrf_token() -> str:
        if "csrf_token" not in g:
            g.csrf_token = request.cookies.get(CSRF_COOKIE) or secrets.token_hex(16)
        return g.csrf_token

    now = datetime.now(UTC)
    return {
        "csrf_token": csrf_token,
        "link": display.link,
        "refresh": _refresh(),
        "now": now,
        "ago": lambda stamp: display.ago(stamp, now),
        "exact": display.exact,
        "duration": lambda start, end: display.duration(start, end, now),
        "error_line": display.error_line,
        "value_text": display.value_text,
        "plural": display.plural,
    }


def _refresh() -> int | None:
    # A display preference, read on error pages too: a bad value is ignored, not refused.
    return params.bounded(request.args.get("refresh"), 5, 3600)


def pretty(payload, source: str) -> str:
    """Show a stored body pretty-printed when it is JSON (Base64 MNS bodies decoded)."""
    if payload is None:
        return "(pruned by retention)"
    try:
        doc = queue.decode(payload) if source == "mns" else json.loads(payload)
    except (InvalidPayload, ValueError, RecursionError):
        return payload
    try:
        return json.dumps(doc, indent=2, ensure_ascii=False)
    except (ValueError, RecursionError):
        return payload
