"""Base class of the forward cache's components."""

from amaranth.lib import wiring

from .params import CacheParams
from .layout import CacheLayout


__all__ = ["CacheComponent"]


class CacheComponent(wiring.Component):
    """A component configured by a :class:`CacheParams`: checks it, keeps it and its
    :class:`CacheLayout` as ``params`` and ``layout``. ``members(params)`` returns the
    signature members (called only once ``params`` is known to be a CacheParams)."""

    def __init__(self, params, members):
        if not isinstance(params, CacheParams):
            raise ValueError(f"{type(self).__name__} needs a CacheParams, "
                             f"not {type(params).__name__}")
        self.params = params
        self.layout = CacheLayout(params)
        super().__init__(members(params))
