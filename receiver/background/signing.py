"""Standard Webhooks headers of an outbound message, signed with the `standardwebhooks`
package (HMAC-SHA256 over `<webhook-id>.<webhook-timestamp>.<body>`).

While a rotated secret is still valid, the message carries one signature per secret,
separated by spaces; a receiver accepts it if any of them matches its secret.
"""

from datetime import datetime
from functools import lru_cache

from standardwebhooks.webhooks import Webhook


@lru_cache(maxsize=256)
def _signer(secret: str) -> Webhook:
    return Webhook(secret)


def headers(message_id: str, body: str, secrets: list[str], at: datetime) -> dict[str, str]:
    """Return `webhook-id`, `webhook-timestamp` and `webhook-signature` for one attempt.

    :param at: the attempt's time (aware); its Unix seconds are the timestamp signed
    """
    signatures = " ".join(_signer(s).sign(message_id, at, body) for s in secrets)
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": signatures,
    }
