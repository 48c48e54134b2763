"""Provider registry: one module per sender, each with NAME, verify() and parse().

Adding a sender means adding one module, one entry here, fixtures and a test file.
"""

from types import ModuleType

from . import aliyun_mps, aliyun_vod, tencent_vod
from .base import Event, InvalidPayload, InvalidSignature

PROVIDERS: dict[str, ModuleType] = {m.NAME: m for m in (aliyun_vod, aliyun_mps, tencent_vod)}
HTTP_PROVIDERS = frozenset({"aliyun_vod", "tencent_vod"})  # MPS reports only through MNS


class UnknownProvider(LookupError):
    """No provider module has that name."""


def get_provider(name: str) -> ModuleType:
    """Return the provider module registered as `name`."""
    try:
        return PROVIDERS[name]
    except KeyError:
        raise UnknownProvider(name) from None


__all__ = [
    "Event",
    "InvalidPayload",
    "InvalidSignature",
    "PROVIDERS",
    "HTTP_PROVIDERS",
    "UnknownProvider",
    "get_provider",
]
