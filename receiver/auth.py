"""Who may see the ops surface (API, pages, metrics).

With RECEIVER_OPS_TOKEN set: `Authorization: Bearer <token>`; pages also take HTTP Basic
with any user name and the token as password. Without it: loopback clients only, others
get 403. Behind a proxy every client looks like loopback, so set a token there.

Without a token, the request must also name a loopback host (`localhost`, `127.0.0.1`,
`[::1]`, any port): a page an operator opens in a browser on the same machine could
otherwise point its own domain at 127.0.0.1 (DNS rebinding) and read the API or post
actions as a same-origin script.

A page from another origin can still make that browser send a request to the ops surface,
which answers loopback without credentials: a form post, or a fetch it cannot read the
answer of but whose effect happens all the same. So every request that may change
something (any method but GET, HEAD and OPTIONS), on every route but the callbacks, is
refused when the browser says it comes from elsewhere (`Sec-Fetch-Site` other than
`same-origin` or `none`, or an `Origin` naming another host), and a body sent to the JSON
API must say it is JSON, which a cross-site form cannot. Scripts and curl send neither
header and are not affected. One rule, registered on the app, so routes added later are
covered too.
"""

import base64
import hmac
import ipaddress
import re
from urllib.parse import urlsplit

from flask import Flask, current_app, request
from werkzeug.datastructures import WWWAuthenticate
from werkzeug.exceptions import Forbidden, Unauthorized, UnsupportedMediaType

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# Callbacks come from providers' servers, signed; they are never a browser's to refuse.
NOT_OPS = ("/hooks/", "/static/", "/healthz")
SAME_SITE_VALUES = ("same-origin", "none")  # `none`: the user's own navigation


def _is_loopback(address: str | None) -> bool:
    try:
        return ipaddress.ip_address((address or "").split("%")[0]).is_loopback
    except ValueError:
        return False


_LOOPBACK_HOST = re.compile(r"(localhost|127\.0\.0\.1|\[::1\])(:[0-9]{1,5})?", re.IGNORECASE)


def _token_matches(given: str, token: str) -> bool:
    return hmac.compare_digest(given.encode(), token.encode())


def require_ops(allow_basic: bool = False) -> None:
    """Abort with 401/403 unless the request may see the ops surface."""
    token = current_app.config.get("OPS_TOKEN")
    if not token:
        if not _is_loopback(request.remote_addr):
            raise Forbidden("the ops surface answers loopback clients only: set RECEIVER_OPS_TOKEN")
        if not _LOOPBACK_HOST.fullmatch(request.headers.get("Host", "localhost")):
            raise Forbidden(
                "without RECEIVER_OPS_TOKEN the ops surface answers only requests for"
                " localhost, 127.0.0.1 or [::1]"
            )
        return
    scheme, _, credentials = request.headers.get("Authorization", "").partition(" ")
    scheme, credentials = scheme.lower(), credentials.strip()
    if scheme == "bearer" and _token_matches(credentials, token):
        return
    if allow_basic and scheme == "basic":
        try:
            _, _, password = base64.b64decode(credentials, validate=True).decode().partition(":")
        except ValueError:  # not Base64 (binascii.Error), not ASCII, or not UTF-8 when decoded
            password = ""
        if _token_matches(password, token):
            return
    challenge = (
        WWWAuthenticate("basic", {"realm": "jobledger"})
        if allow_basic
        else WWWAuthenticate("bearer", {"realm": "jobledger"})
    )
    raise Unauthorized("a valid ops token is required", www_authenticate=challenge)


def refuse_cross_site() -> None:
    """Refuse (403) a state-changing ops request a browser sends from another origin, and
    (415) a JSON API body that does not say it is JSON."""
    if request.method in SAFE_METHODS or request.path.startswith(NOT_OPS):
        return
    site = request.headers.get("Sec-Fetch-Site")
    if site is not None and site.strip().lower() not in SAME_SITE_VALUES:
        raise Forbidden(f"a cross-site request ({site[:20]}) may not change anything here")
    origin = request.headers.get("Origin")
    if origin is not None and not _same_origin(origin):
        raise Forbidden("a request from another origin may not change anything here")
    if request.path.startswith("/api/") and _has_body() and not request.is_json:
        raise UnsupportedMediaType("send the body as JSON (Content-Type: application/json)")


def _same_origin(origin: str) -> bool:
    try:
        netloc = urlsplit(origin.strip()).netloc
    except ValueError:
        return False
    return bool(netloc) and netloc.lower() == request.host.lower()


def _has_body() -> bool:
    length = request.content_length
    return bool(length) or "chunked" in request.headers.get("Transfer-Encoding", "").lower()


def init_app(app: Flask) -> None:
    """Register the cross-site rule for every route of the app."""
    app.before_request(refuse_cross_site)
