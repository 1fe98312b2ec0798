"""The synthetic scene description and its exact ground-truth signed distance fields.

World frame: metres, z up, floor at z = 0, the room an axis-aligned box centred
on the z axis. Class ids: 0 void, 1 wall, 2 floor, 3 ceiling, then the thing
classes of :data:`sdfseg.data.synthetic.objects.THING_CLASSES`. Object ids are
1..N, part ids 1..P (global), group ids 1..G; 0 means stuff in all three.

The whole description round-trips through ``synthetic.json`` (:meth:`SyntheticScene.to_dict`,
:func:`load_synthetic`), so the exact GT SDF can be evaluated after the fact.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ...errors import SdfsegError
from .objects import STUFF_CLASSES, THING_CLASSES
from .primitives import Part, aabb_distance, sdf_box

WALL, FLOOR, CEILING = 1, 2, 3
CLASS_NAMES: tuple[str, ...] = ("void",) + STUFF_CLASSES + THING_CLASSES
STUFF_IDS: tuple[int, ...] = tuple(range(1, 1 + len(STUFF_CLASSES)))
THING_IDS: tuple[int, ...] = tuple(range(1 + len(STUFF_CLASSES), len(CLASS_NAMES)))


def class_id(name: str) -> int:
    """Semantic class id of a class name."""
    return CLASS_NAMES.index(name)


@dataclass
class Room:
    """The room: an axis-aligned box with floor at z = 0; everything happens inside it."""

    half: np.ndarray
    """float64 ``[3]`` half extents (x, y, z)."""
    wall_albedo: np.ndarray = field(default_factory=lambda: np.full((4, 3), 0.8))
    """float64 ``[4, 3]`` colours of the walls at -x, +x, -y, +y."""
    floor_albedo: np.ndarray = field(default_factory=lambda: np.array([[0.55, 0.4, 0.3], [0.45, 0.32, 0.22]]))
    """float64 ``[2, 3]`` the two colours of the floor's checker tiles."""
    ceiling_albedo: np.ndarray = field(default_factory=lambda: np.full(3, 0.9))
    tile: float = 0.5
    """Floor tile size (m)."""

    def __post_init__(self) -> None:
        self.half = np.asarray(self.half, dtype=np.float64).reshape(3)
        self.wall_albedo = np.asarray(self.wall_albedo, dtype=np.float64).reshape(4, 3)
        self.floor_albedo = np.asarray(self.floor_albedo, dtype=np.float64).reshape(2, 3)
        self.ceiling_albedo = np.asarray(self.ceiling_albedo, dtype=np.float64).reshape(3)

    @property
    def center(self) -> np.ndarray:
        return np.array([0.0, 0.0, self.half[2]])

    def sdf(self, points: np.ndarray) -> np.ndarray:
        """Signed distance ``[P]`` to the wall/floor/ceiling shell, positive inside the free space."""
        return -sdf_box(np.asarray(points, dtype=np.float64) - self.center, self.half)

    def face(self, points: np.ndarray) -> np.ndarray:
        """Index ``[P]`` of the nearest face: 0..3 walls (-x, +x, -y, +y), 4 floor, 5 ceiling."""
        p = np.asarray(points, dtype=np.float64) - self.center
        d = np.stack([p[:, 0] + self.half[0], self.half[0] - p[:, 0], p[:, 1] + self.half[1],
                      self.half[1] - p[:, 1], p[:, 2] + self.half[2], self.half[2] - p[:, 2]], axis=-1)
        return np.argmin(d, axis=-1)

    def stuff_class(self, points: np.ndarray) -> np.ndarray:
        """Semantic class ``[P]`` (wall, floor or ceiling) of the nearest face."""
        return np.array([WALL] * 4 + [FLOOR, CEILING], dtype=np.int32)[self.face(points)]

    def to_dict(self) -> dict:
        return {"size": [float(2 * h) for h in self.half], "wall_albedo": self.wall_albedo.tolist(),
                "floor_albedo": self.floor_albedo.tolist(), "ceiling_albedo": self.ceiling_albedo.tolist(),
                "tile": float(self.tile)}

    @classmethod
    def from_dict(cls, d: dict) -> "Room":
        return cls(np.asarray(d["size"], dtype=np.float64) / 2, d["wall_albedo"], d["floor_albedo"],
                   d["ceiling_albedo"], float(d["tile"]))


@dataclass
class SceneObject:
    """One thing instance: a union of parts."""

    id: int
    cls: str
    group: int
    parts: list[Part]
    pattern: dict = field(default_factory=lambda: {"kind": "plain"})
    """Procedural texture: ``kind`` (plain, stripes, checker, rings), ``period`` (m),
    ``amplitude`` (0..1), ``direction`` [3] (stripes), ``origin`` [3] (rings)."""

    @property
    def class_id(self) -> int:
        return class_id(self.cls)

    def sdf(self, points: np.ndarray) -> np.ndarray:
        """Exact signed distance ``[P]`` of world points ``[P, 3]`` to the object (min over parts)."""
        return np.min(np.stack([p.sdf(points) for p in self.parts], axis=-1), axis=-1)

    def aabb(self) -> np.ndarray:
        """World bounding box ``[2, 3]``."""
        boxes = np.stack([p.aabb() for p in self.parts])
        return np.stack([boxes[:, 0].min(axis=0), boxes[:, 1].max(axis=0)])

    def to_dict(self) -> dict:
        return {"id": self.id, "class": self.cls, "class_id": self.class_id, "group": self.group,
                "pattern": self.pattern, "parts": [p.to_dict() for p in self.parts]}

    @classmethod
    def from_dict(cls, d: dict) -> "SceneObject":
        if d.get("class") not in THING_CLASSES:
            raise SdfsegError(f"synthetic object {d.get('id')}: unknown class '{d.get('class')}'")
        return cls(int(d["id"]), str(d["class"]), int(d["group"]), [Part.from_dict(p) for p in d["parts"]],
                   dict(d.get("pattern", {"kind": "plain"})))


@dataclass
class SyntheticScene:
    """A room with objects: geometry, appearance, hierarchy, light and generation settings."""

    room: Room
    objects: list[SceneObject]
    light: dict = field(default_factory=lambda: {"position": [0.0, 0.0, 2.7], "ambient": 0.35, "diffuse": 0.75})
    seed: int = 0
    meta: dict = field(default_factory=dict)
    """Generation settings (noise configs, camera trajectory, image size ...), stored verbatim."""

    @property
    def parts(self) -> list[Part]:
        """All parts, ordered by part id."""
        return sorted((p for o in self.objects for p in o.parts), key=lambda p: p.id)

    @property
    def num_groups(self) -> int:
        return max((o.group for o in self.objects), default=0)

    def part_tables(self) -> dict[str, np.ndarray]:
        """int32 lookup tables indexed by part id (entry 0 = stuff): ``object``, ``group``, ``semantic``."""
        n = len(self.parts)
        obj, grp, sem = (np.zeros(n + 1, dtype=np.int32) for _ in range(3))
        for o in self.objects:
            for p in o.parts:
                obj[p.id], grp[p.id], sem[p.id] = o.id, o.group, o.class_id
        return {"object": obj, "group": grp, "semantic": sem}

    def object_sdf(self, points: np.ndarray) -> np.ndarray:
        """Exact SDF columns ``[P, N + 1]``: column 0 the room shell (positive in free space), k object k."""
        pts = _points(points)
        cols = [self.room.sdf(pts)] + [o.sdf(pts) for o in sorted(self.objects, key=lambda o: o.id)]
        return np.stack(cols, axis=-1)

    def part_sdf(self, points: np.ndarray) -> np.ndarray:
        """Exact SDF columns ``[P, num_parts + 1]``: column 0 the room shell, column j part j."""
        pts = _points(points)
        return np.stack([self.room.sdf(pts)] + [p.sdf(pts) for p in self.parts], axis=-1)

    def scene_sdf(self, points: np.ndarray) -> np.ndarray:
        """Exact SDF ``[P]`` of the free space (min over all columns), evaluating only nearby objects.

        An object is evaluated only where its bounding box is closer than the running minimum,
        which leaves the result exact because the box distance bounds the object distance from below.
        """
        pts = _points(points)
        best = self.room.sdf(pts)
        for o in self.objects:
            near = aabb_distance(pts, o.aabb()) < best
            if near.any():
                best[near] = np.minimum(best[near], o.sdf(pts[near]))
        return best

    def to_dict(self) -> dict:
        return {"format": "sdfseg-synthetic-1", "seed": self.seed, "class_names": list(CLASS_NAMES),
                "stuff_classes": list(STUFF_IDS), "thing_classes": list(THING_IDS),
                "room": self.room.to_dict(), "light": self.light,
                "objects": [o.to_dict() for o in self.objects], "meta": self.meta}

    @classmethod
    def from_dict(cls, d: dict) -> "SyntheticScene":
        if d.get("format") != "sdfseg-synthetic-1":
            raise SdfsegError(f"synthetic.json: unknown format '{d.get('format')}' (expected sdfseg-synthetic-1)")
        try:
            return cls(Room.from_dict(d["room"]), [SceneObject.from_dict(o) for o in d["objects"]],
                       dict(d["light"]), int(d["seed"]), dict(d.get("meta", {})))
        except (KeyError, TypeError, ValueError) as exc:
            raise SdfsegError(f"synthetic.json: missing or bad field ({exc})") from None


def _points(points: np.ndarray) -> np.ndarray:
    pts = np.asarray(points, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[1] != 3:
        raise ValueError(f"points must be [P, 3], got {pts.shape}")
    return pts


def load_synthetic(path: str | Path) -> SyntheticScene:
    """Read ``synthetic.json`` (or a scene folder containing it) into a :class:`SyntheticScene`."""
    path = Path(path)
    if path.is_dir():
        path = path / "synthetic.json"
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SdfsegError(f"{path}: file not found (expected a synthetic scene description)") from None
    except json.JSONDecodeError as exc:
        raise SdfsegError(f"{path}: not valid JSON ({exc})") from None
    return SyntheticScene.from_dict(d)
