"""Analytic signed distance functions of the primitives synthetic objects are built from.

Every primitive is defined in its own *local* frame (z up, centred at the origin)
and placed in the world by a :class:`Part`: ``local = R^T (world - center)`` with
``R`` the world-from-local rotation. Distances are exact Euclidean distances
outside every primitive (and inside for all but the rounded box corners' interior,
where they are still exact), so the union of parts (``min``) has the exact
zero level set and exact distances outside.

Parameters (all lengths in metres):

* ``box``        ``half`` [3]: half extents.
* ``round_box``  ``half`` [3] (outer half extents), ``radius``: edge rounding.
* ``cylinder``   ``radius``, ``half_height``: axis along local z.
* ``sphere``     ``radius``.
* ``torus``      ``major``, ``minor``: ring in the local xy plane.
* ``capsule``    ``radius``, ``half_length``: segment from z = -half_length to +half_length.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from ...errors import SdfsegError


def sdf_box(p: np.ndarray, half: np.ndarray) -> np.ndarray:
    """Signed distance of local points ``[P, 3]`` to an axis-aligned box; returns ``[P]``."""
    q = np.abs(p) - np.asarray(half, dtype=np.float64)
    outside = np.sqrt(np.sum(np.maximum(q, 0.0) ** 2, axis=-1))
    inside = np.minimum(q.max(axis=-1), 0.0)
    return outside + inside


def sdf_round_box(p: np.ndarray, half: np.ndarray, radius: float) -> np.ndarray:
    """Box with rounded edges; ``half`` are the outer half extents. ``[P, 3] -> [P]``."""
    return sdf_box(p, np.asarray(half, dtype=np.float64) - radius) - radius


def sdf_cylinder(p: np.ndarray, radius: float, half_height: float) -> np.ndarray:
    """Capped cylinder along local z. ``[P, 3] -> [P]``."""
    dr = np.sqrt(p[:, 0] ** 2 + p[:, 1] ** 2) - radius
    dz = np.abs(p[:, 2]) - half_height
    outside = np.sqrt(np.maximum(dr, 0.0) ** 2 + np.maximum(dz, 0.0) ** 2)
    return outside + np.minimum(np.maximum(dr, dz), 0.0)


def sdf_sphere(p: np.ndarray, radius: float) -> np.ndarray:
    """Sphere at the origin. ``[P, 3] -> [P]``."""
    return np.sqrt(np.sum(p * p, axis=-1)) - radius


def sdf_torus(p: np.ndarray, major: float, minor: float) -> np.ndarray:
    """Torus around local z (ring in the xy plane). ``[P, 3] -> [P]``."""
    ring = np.sqrt(p[:, 0] ** 2 + p[:, 1] ** 2) - major
    return np.sqrt(ring ** 2 + p[:, 2] ** 2) - minor


def sdf_capsule(p: np.ndarray, radius: float, half_length: float) -> np.ndarray:
    """Capsule around the segment z in [-half_length, half_length]. ``[P, 3] -> [P]``."""
    z = p[:, 2] - np.clip(p[:, 2], -half_length, half_length)
    return np.sqrt(p[:, 0] ** 2 + p[:, 1] ** 2 + z ** 2) - radius


def _box_bound(params: dict) -> np.ndarray:
    return np.asarray(params["half"], dtype=np.float64)


PRIMITIVES: dict[str, tuple[Callable[..., np.ndarray], Callable[[dict], np.ndarray]]] = {
    # name: (sdf(p, **params), local half extents of the bounding box)
    "box": (sdf_box, _box_bound),
    "round_box": (sdf_round_box, _box_bound),
    "cylinder": (sdf_cylinder, lambda q: np.array([q["radius"], q["radius"], q["half_height"]])),
    "sphere": (sdf_sphere, lambda q: np.full(3, q["radius"])),
    "torus": (sdf_torus, lambda q: np.array([q["major"] + q["minor"]] * 2 + [q["minor"]])),
    "capsule": (sdf_capsule, lambda q: np.array([q["radius"], q["radius"], q["half_length"] + q["radius"]])),
}


def yaw_matrix(yaw: float) -> np.ndarray:
    """World-from-local rotation about +z by ``yaw`` radians, ``[3, 3]``."""
    c, s = np.cos(yaw), np.sin(yaw)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


@dataclass
class Part:
    """One placed primitive: a part of an object (e.g. a table leg)."""

    id: int
    """Globally unique part id (1 .. num_parts; 0 is reserved for stuff)."""
    name: str
    """Human-readable role, e.g. ``"top"``, ``"leg"``."""
    kind: str
    """Primitive type, a key of :data:`PRIMITIVES`."""
    params: dict
    """Primitive parameters (see the module docstring)."""
    center: np.ndarray
    """float64 ``[3]`` world position of the local origin."""
    rotation: np.ndarray
    """float64 ``[3, 3]`` world-from-local rotation."""
    albedo: np.ndarray = field(default_factory=lambda: np.full(3, 0.5))
    """float64 ``[3]`` base colour in [0, 1]."""

    def __post_init__(self) -> None:
        if self.kind not in PRIMITIVES:
            raise SdfsegError(f"part {self.id}: unknown primitive type '{self.kind}' "
                              f"(expected one of {', '.join(PRIMITIVES)})")
        self.center = np.asarray(self.center, dtype=np.float64).reshape(3)
        self.rotation = np.asarray(self.rotation, dtype=np.float64).reshape(3, 3)
        self.albedo = np.asarray(self.albedo, dtype=np.float64).reshape(3)

    def to_local(self, points: np.ndarray) -> np.ndarray:
        """World points ``[P, 3]`` -> local points ``[P, 3]``."""
        return (points - self.center) @ self.rotation

    def sdf(self, points: np.ndarray) -> np.ndarray:
        """Exact signed distance of world points ``[P, 3]`` to this part, ``[P]``."""
        fn, _ = PRIMITIVES[self.kind]
        return fn(self.to_local(np.asarray(points, dtype=np.float64)), **self.params)

    def aabb(self) -> np.ndarray:
        """World axis-aligned bounding box ``[2, 3]`` (min corner, max corner)."""
        _, bound = PRIMITIVES[self.kind]
        half = np.abs(self.rotation) @ bound(self.params)
        return np.stack([self.center - half, self.center + half])

    def to_dict(self) -> dict:
        return {"id": self.id, "name": self.name, "type": self.kind,
                "params": {k: (list(map(float, v)) if np.ndim(v) else float(v)) for k, v in self.params.items()},
                "center": [float(x) for x in self.center],
                "rotation": [[float(x) for x in row] for row in self.rotation],
                "albedo": [float(x) for x in self.albedo]}

    @classmethod
    def from_dict(cls, d: dict) -> "Part":
        try:
            params = {k: (np.asarray(v, dtype=np.float64) if isinstance(v, list) else float(v))
                      for k, v in d["params"].items()}
            return cls(int(d["id"]), str(d["name"]), str(d["type"]), params, d["center"], d["rotation"],
                       d.get("albedo", [0.5, 0.5, 0.5]))
        except (KeyError, TypeError, ValueError) as exc:
            raise SdfsegError(f"synthetic part description: missing or bad field ({exc})") from None


def aabb_distance(points: np.ndarray, box: np.ndarray) -> np.ndarray:
    """Unsigned distance ``[P]`` of points ``[P, 3]`` to an AABB ``[2, 3]`` (0 inside).

    A lower bound of the distance to anything contained in the box.
    """
    d = np.maximum(box[0] - points, 0.0) + np.maximum(points - box[1], 0.0)
    return np.sqrt(np.sum(d * d, axis=-1))
