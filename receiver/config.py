"""Settings: defaults, `RECEIVER_*` environment variables, and validation.

Values are text as written. Flask's `from_prefixed_env` would parse them as JSON, turning a
token made of digits into a number, so each setting has its own small parser instead. A
setting that is present but malformed stops start-up with a message naming the variable.
"""

import os
import re
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

from store import is_url

PREFIX = "RECEIVER_"
MIB = 1024 * 1024

# Seconds a job may go without a final word before it is `timed_out`, per kind. MPS smart
# production and VOD preprocessing are short; transcodes of long media and Tencent task
# flows with AI review can take hours; uploads by URL wait on the source. Edge transcoding
# is a live stream that runs until stopped: 0 means it never times out.
DEFAULT_DEADLINES = {
    "default": 21600,
    "preprocess": 7200,
    "dynamic_image": 3600,
    "snapshot": 3600,
    "iproduction": 3600,
    "transcode": 21600,
    "procedure": 21600,
    "upload": 86400,
    "edge_transcode": 0,
}


class ConfigError(ValueError):
    """A setting is malformed or incomplete; the message names the variable."""


def _text(value: str) -> str | None:
    return value.strip() or None


def _url(value: str) -> str | None:
    value = value.strip()
    if not value:
        return None
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError("expected an http:// or https:// URL")
    return value


def _database(value: str) -> str | None:
    """A file path (SQLite), or a postgresql:// URL that libpq accepts."""
    value = value.strip()
    if "://" in value:
        if not is_url(value):
            raise ValueError("expected a file path or a postgresql:// URL")
        from store.pg_options import check_url

        check_url(value)
    return value or None


def _list(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def _url_list(value: str) -> list[str]:
    items = _list(value)
    for i, item in enumerate(items, 1):
        try:
            _url(item)
        except ValueError as e:
            raise ValueError(f"item {i} of {len(items)}: {e}") from None
    return items


def _flag(value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off", ""):
        return False
    raise ValueError("expected 1 or 0")


def _durability(value: str) -> str:
    lowered = value.strip().lower()
    if lowered not in ("normal", "full"):
        raise ValueError("expected normal or full")
    return lowered


def _whole(value: str) -> int | None:
    # ASCII digits only: str.isdigit() also takes "²", which int() refuses
    value = value.strip()
    return int(value) if re.fullmatch(r"[0-9]{1,12}", value) else None


def _positive_int(value: str) -> int | None:
    if not value.strip():
        return None
    days = _whole(value)
    if days is None or days < 1:
        raise ValueError("expected a whole number of days, at least 1")
    return days


def _seconds(value: str) -> int:
    seconds = _whole(value)
    if seconds is None:
        raise ValueError("expected a whole number of seconds")
    return seconds


def _at_least_one(what: str) -> Callable[[str], int]:
    def parse(value: str) -> int:
        number = _whole(value)
        if number is None or number < 1:
            raise ValueError(f"expected a whole number of {what}, at least 1")
        return number

    return parse


def _waits(value: str) -> list[int]:
    waits = []
    for item in _list(value):
        seconds = _whole(item)
        if seconds is None:
            raise ValueError(f"{item[:20]!r} is not a whole number of seconds")
        waits.append(seconds)
    if len(waits) > 50:
        raise ValueError("at most 50 waits")
    return waits


def _timeout(value: str) -> int:
    seconds = _whole(value)
    if seconds is None or not 1 <= seconds <= 600:
        raise ValueError("expected a whole number of seconds from 1 to 600")
    return seconds


def _hops(value: str) -> int:
    hops = _whole(value) if value.strip() else 0
    if hops is None or hops > 5:
        raise ValueError("expected the number of proxies in front, 0 to 5")
    return hops


_HOST_PORT = re.compile(r"^[A-Za-z0-9.-]+(:\d{1,5})?$")


def _endpoint(value: str) -> str | None:
    value = value.strip()
    if value and not _HOST_PORT.match(value):
        raise ValueError("expected host or host:port")
    return value or None


def _deadlines(value: str) -> dict[str, int]:
    table, items = {}, _list(value)
    for item in items:
        kind, sep, seconds = item.partition("=")
        number = _whole(seconds)
        if not sep or not kind.strip() or number is None:
            which = f" ({item[:40]!r} is not one)" if len(items) > 1 else ""
            raise ValueError(f"expected kind=seconds pairs, seconds a whole number{which}")
        table[kind.strip()] = number
    table.setdefault("default", DEFAULT_DEADLINES["default"])
    return table


SETTINGS: dict[str, tuple[Callable[[str], Any], Any]] = {
    "DATABASE": (_database, "instance/ledger.db"),
    "OPS_TOKEN": (_text, None),
    "ALIYUN_VOD_CALLBACK_URL": (_url, None),
    "ALIYUN_VOD_AUTH_KEYS": (_list, []),
    "TENCENT_VOD_SIGN_KEY": (_text, None),
    "HOOK_TOKEN": (_text, None),
    "ALLOW_UNSIGNED": (_flag, False),
    "MNS_ENDPOINT": (_url, None),
    "MNS_ACCESS_KEY_ID": (_text, None),
    "MNS_ACCESS_KEY_SECRET": (_text, None),
    "MNS_QUEUES": (_list, []),
    "ALIYUN_ACCESS_KEY_ID": (_text, None),
    "ALIYUN_ACCESS_KEY_SECRET": (_text, None),
    "ALIYUN_REGION": (_text, "cn-shanghai"),
    "ALIYUN_VOD_ENDPOINT": (_endpoint, None),
    "ALIYUN_MTS_ENDPOINT": (_endpoint, None),
    "ALIYUN_LIVE_ENDPOINT": (_endpoint, None),
    "MPS_PIPELINE_ID": (_text, None),
    "TENCENT_SECRET_ID": (_text, None),
    "TENCENT_SECRET_KEY": (_text, None),
    "TENCENT_VOD_ENDPOINT": (_endpoint, "vod.tencentcloudapi.com"),
    "TENCENT_VOD_V2_URL": (_url, "https://vod.api.qcloud.com/v2/index.php"),
    "ALERT_WEBHOOK_URLS": (_url_list, []),
    "ALERT_SNS_TOPIC_ARN": (_text, None),
    # Where alert links point, and how long alerts are held to be sent together (a burst
    # becomes one summary instead of a storm).
    "PUBLIC_URL": (_url, "http://localhost:8000"),
    "ALERT_GROUP_SECONDS": (_seconds, 60),
    "DURABILITY": (_durability, "normal"),
    "RETENTION_DAYS": (_positive_int, None),
    # How many reverse proxies in front set X-Forwarded-For/-Proto/-Host (the shipped nginx
    # config: 1). Only then does the app believe those headers.
    "PROXY_HOPS": (_hops, 0),
    "DEADLINES": (_deadlines, DEFAULT_DEADLINES),
    # Provider health (receiver/background/health.py): the recent window a failure rate is
    # judged over, the trailing baseline before it, and the fewest failures that can fire.
    "ANOMALY_WINDOW_SECONDS": (_at_least_one("seconds"), 900),
    "ANOMALY_BASELINE_SECONDS": (_at_least_one("seconds"), 604800),
    "ANOMALY_MIN_FAILURES": (_at_least_one("failures"), 5),
    # Outbound event delivery (the `deliver` process, docs/operations.md)
    "DELIVERY_RETRY_SECONDS": (_waits, [5, 300, 1800, 7200, 18000, 36000, 36000]),
    "DELIVERY_TIMEOUT_SECONDS": (_timeout, 15),
    "DELIVERY_DISABLE_AFTER_SECONDS": (_seconds, 432000),
    "DELIVERY_ALLOW_PRIVATE": (_flag, False),
}

# Settings that must never appear in logs, pages or error messages.
SECRETS = frozenset(
    {
        "OPS_TOKEN",
        "ALIYUN_VOD_AUTH_KEYS",
        "TENCENT_VOD_SIGN_KEY",
        "HOOK_TOKEN",
        "MNS_ACCESS_KEY_SECRET",
        "ALIYUN_ACCESS_KEY_SECRET",
        "TENCENT_SECRET_KEY",
        # chat and incident webhooks put their credential in the URL's path
        "ALERT_WEBHOOK_URLS",
    }
)


def defaults() -> dict[str, Any]:
    """Return every setting's default, plus Flask's own bounds."""
    out = {
        name: (dict(d) if isinstance(d, dict) else list(d) if isinstance(d, list) else d)
        for name, (_, d) in SETTINGS.items()
    }
    # Webhooks are small (the largest documented sample is a few KiB); refuse big bodies.
    out["MAX_CONTENT_LENGTH"] = MIB
    return out


def from_environ(environ: Mapping[str, str] = os.environ) -> dict[str, Any]:
    """Parse the `RECEIVER_*` variables that are present.

    :raises ConfigError: naming the first malformed variable
    """
    out = {}
    for name, (parse, _) in SETTINGS.items():
        if PREFIX + name in environ:
            out[name] = _parse_one(name, parse, environ[PREFIX + name])
    return out


def _parse_one(name: str, parse: Callable[[str], Any], raw: str) -> Any:
    try:
        return parse(raw)
    except ValueError as e:
        raise ConfigError(
            f"{PREFIX}{name} is malformed: {e}; got {_shown(name, parse, raw)}"
        ) from None


def _shown(name: str, parse: Callable[[str], Any], raw: str) -> str:
    """Return what an error message may show of a malformed value: never a credential."""
    if name in SECRETS:
        return "(hidden)"
    if name == "DATABASE" and "://" in raw:
        from store.backend import redact  # a postgresql:// URL may carry a password

        return repr(redact(raw.strip())[:120])
    if parse is _url:
        # a URL may carry a user and password, or a token in its path or query string
        try:
            parts = urlsplit(raw.strip())
            if parts.scheme and parts.hostname:
                return repr(f"{parts.scheme}://{parts.hostname}/...")
        except ValueError:
            pass
        return "(hidden: not shown, as a URL may carry credentials)"
    return repr(raw[:80])


def load(environ: Mapping[str, str] = os.environ) -> dict[str, Any]:
    """Return every setting: the defaults, then the `RECEIVER_*` variables, checked together.

    :raises ConfigError: naming the variable to set or fix
    """
    config = defaults()
    config.update(from_environ(environ))
    validate(config)
    return config


def validate(config: dict[str, Any]) -> None:
    """Normalize settings given in code (tests) and check the ones that go together.

    :raises ConfigError: naming the variable to set or fix
    """
    for name, (parse, _) in SETTINGS.items():
        if isinstance(config.get(name), str) and parse not in (_text,):
            config[name] = _parse_one(name, parse, config[name])
    if config.get("ALIYUN_VOD_AUTH_KEYS") and not config.get("ALIYUN_VOD_CALLBACK_URL"):
        raise ConfigError(
            "RECEIVER_ALIYUN_VOD_CALLBACK_URL must be set with RECEIVER_ALIYUN_VOD_AUTH_KEYS:"
            " the callback URL is part of the string VOD signs"
        )
    mns = ("MNS_ENDPOINT", "MNS_ACCESS_KEY_ID", "MNS_ACCESS_KEY_SECRET")
    if any(config.get(k) for k in mns) and not all(config.get(k) for k in mns):
        missing = next(k for k in mns if not config.get(k))
        raise ConfigError(f"{PREFIX}{missing} must be set with the other RECEIVER_MNS_* settings")
    for pair in (
        ("ALIYUN_ACCESS_KEY_ID", "ALIYUN_ACCESS_KEY_SECRET"),
        ("TENCENT_SECRET_ID", "TENCENT_SECRET_KEY"),
    ):
        if bool(config.get(pair[0])) != bool(config.get(pair[1])):
            missing = pair[1] if config.get(pair[0]) else pair[0]
            raise ConfigError(f"{PREFIX}{missing} must be set together with {PREFIX}{pair[0]}")
