"""Lifting methods on the SDF backbone, registered by name (``train.method``): see :mod:`.base`."""

from .base import Addon, Method, create_addons, create_method, method_class, method_name, method_names, register
from . import clustering, codebook, semantic, supervised  # noqa: F401  (registration)

__all__ = ["Addon", "Method", "create_addons", "create_method", "method_class", "method_name", "method_names", "register"]
