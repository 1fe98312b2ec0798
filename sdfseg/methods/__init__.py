"""Lifting methods on the SDF backbone, registered by name (``train.method``): see :mod:`.base`."""

from .base import Method, create_method, method_class, method_name, method_names, register
from . import clustering, codebook, semantic, supervised  # noqa: F401  (registration)

__all__ = ["Method", "create_method", "method_class", "method_name", "method_names", "register"]
