"""Endpoints: where outbound messages go, what each one wants, and how it is doing.

An endpoint is a URL (HTTP(S), an SNS topic ARN or an SQS queue URL), a filter over the
job record, and a signing secret (two during the 24 hours after a rotation). It gets the
messages of changes made after it was created: `message_mark` is the newest message id
when it was made, and only later messages are fanned out to it (store/deliveries.py).

Secrets are read by `target` alone; every other read leaves them out.
"""

import base64
import json
import secrets as random_secrets
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from . import states
from .ids import iso, new_id, utcnow
from .session import Part

ROTATION_OVERLAP = timedelta(hours=24)
FILTER_VALUES: dict[str, tuple[str, ...] | None] = {
    "provider": ("aliyun", "tencent"),
    "service": ("vod", "mps", "live"),
    "kind": None,  # open: providers add kinds
    "state": states.ALL,
    "origin": ("submitted", "external"),
}
SECRET_PREFIX = "whsec_"
_FIELDS = (
    "id, url, description, filter, enabled, disabled_reason, created_at, updated_at,"
    " last_success_at, last_failure_at, failing_since"
)


class BadEndpoint(ValueError):
    """An endpoint field is malformed; the message starts with the field's name."""


def new_secret() -> str:
    """Return a new signing secret: `whsec_` and the Base64 of 24 random bytes."""
    return SECRET_PREFIX + base64.b64encode(random_secrets.token_bytes(24)).decode()


def check_secret(secret: object) -> str:
    """Return a given secret if it is `whsec_` and Base64 of 24 to 64 bytes.

    :raises BadEndpoint: naming `secret` (never showing it)
    """
    if not isinstance(secret, str) or not secret.startswith(SECRET_PREFIX):
        raise BadEndpoint("secret must be whsec_ followed by Base64 of 24 to 64 random bytes")
    try:
        key = base64.b64decode(secret[len(SECRET_PREFIX) :], validate=True)
    except ValueError:
        raise BadEndpoint("secret: the part after whsec_ is not Base64") from None
    if not 24 <= len(key) <= 64:
        raise BadEndpoint("secret must hold 24 to 64 bytes once Base64-decoded")
    return secret


def check_filter(doc: object) -> dict[str, list[str]]:
    """Return a filter normalized ({key: [values]}, empty lists dropped).

    :raises BadEndpoint: naming `filter` and the key or value at fault
    """
    if doc is None:
        return {}
    if not isinstance(doc, dict):
        raise BadEndpoint('filter must be an object of lists: {"state": ["failed"], ...}')
    out = {}
    for key, values in doc.items():
        if key not in FILTER_VALUES:
            known = ", ".join(FILTER_VALUES)
            raise BadEndpoint(f"filter: unknown key {str(key)[:40]!r}; known keys: {known}")
        if isinstance(values, str):
            values = [values]
        if not isinstance(values, list) or not all(isinstance(v, str) and v for v in values):
            raise BadEndpoint(f"filter.{key} must be a list of strings")
        allowed = FILTER_VALUES[key]
        unknown = [v for v in values if allowed is not None and v not in allowed]
        if unknown:
            raise BadEndpoint(
                f"filter.{key}: unknown value {unknown[0][:40]!r};"
                f" valid values: {', '.join(allowed or ())}"
            )
        if values:
            out[key] = sorted(set(values))
    return out


def matches(flt: dict[str, list[str]], record: dict) -> bool:
    """Tell whether a job record passes an endpoint's filter (empty: every job)."""
    return all(record.get(key) in values for key, values in flt.items())


def shown_url(url: str) -> str:
    """Return what a log or an alert may show of an endpoint URL: its scheme and host (a
    webhook URL may carry a credential in its path or query), or an SNS/SQS name."""
    if url.startswith("arn:"):
        return url
    parts = urlsplit(url)
    if parts.hostname and parts.hostname.startswith("sqs."):
        return url.split("?", 1)[0]
    return f"{parts.scheme}://{parts.hostname or ''}/..."


def _endpoint(row: tuple) -> dict:
    names = [c.strip() for c in _FIELDS.split(",")]
    out = dict(zip(names, row, strict=True))
    out["filter"] = json.loads(out["filter"] or "{}")
    out["enabled"] = bool(out["enabled"])
    return out


class Endpoints(Part):
    """Endpoints and their health (the ledger's `endpoints` part)."""

    def create(
        self,
        *,
        url: str,
        description: str | None = None,
        filter: dict | None = None,
        secret: str | None = None,
        enabled: bool = True,
    ) -> dict:
        """Make an endpoint; return it with its `secret` (the one time a list shows it)."""
        endpoint_id, now = new_id(), utcnow()
        secret = secret or new_secret()
        text = json.dumps(check_filter(filter), sort_keys=True)

        def write() -> None:
            self.conn.execute(
                "INSERT INTO endpoints (id, url, description, filter, secret, enabled,"
                " created_at, updated_at, message_mark) VALUES (?, ?, ?, ?, ?, ?, ?, ?,"
                " (SELECT COALESCE(MAX(id), 0) FROM messages))",
                (endpoint_id, url, description, text, secret, int(enabled), now, now),
            )

        self.write(write)
        return {**(self.get(endpoint_id) or {}), "secret": secret}

    def get(self, endpoint_id: str) -> dict | None:
        """Return one endpoint with its health, without its secret; None if unknown."""
        row = self.conn.execute(
            f"SELECT {_FIELDS} FROM endpoints WHERE id = ?", (endpoint_id,)
        ).fetchone()
        if row is None:
            return None
        endpoint = _endpoint(row)
        endpoint.update(self._counts([endpoint_id]).get(endpoint_id, {}))
        return endpoint

    def all(self) -> list[dict]:
        """Return every endpoint with its health, oldest first, without secrets."""
        rows = self.conn.execute(f"SELECT {_FIELDS} FROM endpoints ORDER BY created_at, id")
        endpoints = [_endpoint(r) for r in rows.fetchall()]
        counts = self._counts([e["id"] for e in endpoints])
        for endpoint in endpoints:
            endpoint.update(counts.get(endpoint["id"], {}))
        return endpoints

    def _counts(self, ids: list[str]) -> dict[str, dict[str, int]]:
        """Return {endpoint id: {pending, delivered, failed}} from the status index."""
        out = {i: {"pending": 0, "delivered": 0, "failed": 0} for i in ids}
        if not ids:
            return out
        marks = ",".join("?" * len(ids))
        for endpoint_id, status, n in self.conn.execute(
            "SELECT endpoint_id, status, COUNT(*) FROM deliveries"
            f" WHERE endpoint_id IN ({marks}) GROUP BY endpoint_id, status",
            tuple(ids),
        ):
            out[endpoint_id][status] = n
        return out

    def update(self, endpoint_id: str, changes: dict) -> dict | None:
        """Change `url`, `description`, `filter` or `enabled`; None if there is no such
        endpoint. Enabling one clears why it was disabled and sends what is pending now."""
        now = utcnow()
        sets: list[str] = ["updated_at = ?"]
        params: list[Any] = [now]
        for key in ("url", "description"):
            if key in changes:
                sets.append(f"{key} = ?")
                params.append(changes[key])
        if "filter" in changes:
            sets.append("filter = ?")
            params.append(json.dumps(check_filter(changes["filter"]), sort_keys=True))
        enable = changes.get("enabled")
        if enable is not None:
            sets.append("enabled = ?")
            params.append(int(bool(enable)))
            if enable:
                sets += ["disabled_reason = NULL", "failing_since = NULL"]
            else:
                sets.append("disabled_reason = COALESCE(disabled_reason, ?)")
                params.append("disabled by an operator")

        def write() -> bool:
            found = self.conn.execute(
                f"UPDATE endpoints SET {', '.join(sets)} WHERE id = ? RETURNING id",
                (*params, endpoint_id),
            ).fetchall()
            if found and enable:
                self.conn.execute(
                    "UPDATE deliveries SET next_attempt_at = ? WHERE endpoint_id = ?"
                    " AND status = 'pending' AND next_attempt_at > ?",
                    (now, endpoint_id, now),
                )
            return bool(found)

        return self.get(endpoint_id) if self.write(write) else None

    def delete(self, endpoint_id: str) -> bool:
        """Delete an endpoint and its deliveries; return False if there was none."""

        def write() -> bool:
            found = self.conn.execute(
                "DELETE FROM endpoints WHERE id = ? RETURNING id", (endpoint_id,)
            ).fetchall()
            self.conn.execute(
                "DELETE FROM delivery_attempts WHERE delivery_id IN"
                " (SELECT id FROM deliveries WHERE endpoint_id = ?)",
                (endpoint_id,),
            )
            self.conn.execute("DELETE FROM deliveries WHERE endpoint_id = ?", (endpoint_id,))
            self.conn.execute("DELETE FROM delivery_counts WHERE endpoint_id = ?", (endpoint_id,))
            return bool(found)

        return self.write(write)

    def rotate_secret(self, endpoint_id: str, secret: str | None = None) -> str | None:
        """Give an endpoint a new secret; the old one signs too for the next 24 hours.

        :returns: the new secret, or None if there is no such endpoint
        """
        secret = secret or new_secret()
        now = datetime.now(UTC)
        found = self.write(
            lambda: self.conn.execute(
                "UPDATE endpoints SET previous_secret = secret, previous_secret_until = ?,"
                " secret = ?, updated_at = ? WHERE id = ? RETURNING id",
                (iso(now + ROTATION_OVERLAP), secret, iso(now), endpoint_id),
            ).fetchall()
        )
        return secret if found else None

    def target(self, endpoint_id: str, now: datetime) -> dict | None:
        """Return where and how to send to an endpoint now: its `url`, and the `keys` that
        sign (the current secret, and the previous one while its overlap lasts); None if
        the endpoint is gone."""
        row = self.conn.execute(
            "SELECT url, secret, previous_secret, previous_secret_until FROM endpoints"
            " WHERE id = ?",
            (endpoint_id,),
        ).fetchone()
        if row is None:
            return None
        url, current, previous, until = row
        keys = [current] + ([previous] if previous and until and until > iso(now) else [])
        return {"url": url, "keys": keys}

    def failing(self) -> list[dict]:
        """Return the endpoints failing now or disabled, for the dashboard."""
        rows = self.conn.execute(
            f"SELECT {_FIELDS} FROM endpoints WHERE failing_since IS NOT NULL OR enabled = 0"
            " ORDER BY failing_since, id"
        )
        return [_endpoint(r) for r in rows.fetchall()]
