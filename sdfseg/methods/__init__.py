"""Lifting methods on the SDF backbone, registered by name (``train.method``): see :mod:`.base`."""

from .base import Addon, Method, create_addons, create_method, method_class, method_name, method_names, register
from . import semantic, supervised  # noqa: F401  (registration of the built-in methods)
from .clustering import method as _clustering  # noqa: F401
from .codebook import method as _codebook  # noqa: F401

__all__ = ["Addon", "Method", "create_addons", "create_method", "method_class", "method_name", "method_names", "register"]
