"""Who may see the ops surface (API, pages, metrics).

With RECEIVER_OPS_TOKEN set: `Authorization: Bearer <token>`; pages also take HTTP Basic
with any user name and the token as password. Without it: loopback clients only, others
get 403. Behind a proxy every client looks like loopback, so set a token there.

Without a token, the request must also name a loopback host (`localhost`, `127.0.0.1`,
`[::1]`, any port): a page an operator opens in a browser on the same machine could
otherwise point its own domain at 127.0.0.1 (DNS rebinding) and read the API or post
actions as a same-origin script.
"""

import base64
import binascii
import hmac
import ipaddress
import re

from flask import current_app, request
from werkzeug.datastructures import WWWAuthenticate
from werkzeug.exceptions import Forbidden, Unauthorized


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
        except (binascii.Error, UnicodeDecodeError):
            password = ""
        if _token_matches(password, token):
            return
    challenge = (
        WWWAuthenticate("basic", {"realm": "jobledger"})
        if allow_basic
        else WWWAuthenticate("bearer", {"realm": "jobledger"})
    )
    raise Unauthorized("a valid ops token is required", www_authenticate=challenge)
