"""Provider registry: one module per sender, each of the shape `base.Provider`.

Adding a sender means adding one module that fills in that shape, one entry here,
fixtures and a test file.
"""

from .aliyun import mps as aliyun_mps
from .aliyun import vod as aliyun_vod
from .base import Event, InvalidPayload, InvalidSignature, Provider
from .tencent import vod as tencent_vod

_MODULES: tuple[Provider, ...] = (aliyun_vod, aliyun_mps, tencent_vod)
PROVIDERS: dict[str, Provider] = {m.NAME: m for m in _MODULES}
HTTP_PROVIDERS = frozenset({"aliyun_vod", "tencent_vod"})  # MPS reports only through MNS


class UnknownProvider(LookupError):
    """No provider module has that name."""


def get_provider(name: str) -> Provider:
    """Return the provider module registered as `name`."""
    try:
        return PROVIDERS[name]
    except KeyError:
        raise UnknownProvider(name) from None


__all__ = [
    "Event",
    "InvalidPayload",
    "InvalidSignature",
    "Provider",
    "PROVIDERS",
    "HTTP_PROVIDERS",
    "UnknownProvider",
    "get_provider",
]
