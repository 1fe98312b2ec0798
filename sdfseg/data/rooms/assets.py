"""Furniture as triangle meshes: each asset is a few named parts (seat, legs, back ...).

An asset is built in its own frame: origin on the floor at the centre of its footprint,
``+z`` up, front facing ``+y``. :func:`place` moves it into the room (yaw about ``z``,
then a translation). Parts carry an albedo and a procedural texture kind that the ray
caster evaluates at the hit point (:mod:`.raycast`), so identical instances of one
asset are identical in shape and appearance.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
import trimesh
from trimesh import creation

TEXTURES = ("plain", "wood", "fabric", "tiles", "plaster", "screen", "metal")
"""Procedural textures (see :func:`sdfseg.data.rooms.raycast.albedo`)."""


@dataclass
class Part:
    """One rigid piece of an asset: a closed triangle mesh with its look."""

    name: str
    mesh: trimesh.Trimesh
    color: tuple[float, float, float]
    """Base albedo in [0, 1]."""
    texture: str = "plain"
    scale: float = 0.1
    """Texture period in metres."""


@dataclass
class Asset:
    """A piece of furniture (or a stuff element such as a door) made of parts."""

    cls: str
    """Class name in Panoptic Lifting's reduced ScanNet set (``sdfseg.data.formats.common.PL_REDUCED_NAMES``)."""
    parts: list[Part] = field(default_factory=list)
    footprint: tuple[float, float] = (0.0, 0.0)
    """Extent along x and y in the asset frame (metres), for collision-free placement."""
    height: float = 0.0

    def mesh(self) -> trimesh.Trimesh:
        """All parts as one mesh."""
        return trimesh.util.concatenate([p.mesh for p in self.parts])


def box(size, center) -> trimesh.Trimesh:
    """Axis-aligned box of ``size`` (x, y, z) centred at ``center``."""
    return creation.box(extents=np.asarray(size, float), transform=trimesh.transformations.translation_matrix(center))


def rod(radius: float, p0, p1, sections: int = 10) -> trimesh.Trimesh:
    """Cylinder of ``radius`` from point ``p0`` to ``p1`` (thin legs, stems, handles)."""
    return creation.cylinder(radius=radius, segment=np.array([p0, p1], float), sections=sections)


def disk(radius: float, height: float, z0: float, sections: int = 24) -> trimesh.Trimesh:
    """Flat vertical-axis cylinder standing on ``z0``."""
    return creation.cylinder(radius=radius, height=height, sections=sections,
                             transform=trimesh.transformations.translation_matrix([0, 0, z0 + height / 2]))


def place(asset: Asset, yaw: float, xy, z: float = 0.0) -> Asset:
    """A copy of ``asset`` rotated by ``yaw`` (radians, about +z) and moved to ``(x, y, z)``."""
    m = trimesh.transformations.rotation_matrix(yaw, [0, 0, 1])
    m[:3, 3] = [xy[0], xy[1], z]
    parts = []
    for p in asset.parts:
        mesh = p.mesh.copy()
        mesh.apply_transform(m)
        parts.append(replace(p, mesh=mesh))
    return replace(asset, parts=parts)


def legs(radius: float, half_x: float, half_y: float, height: float, z0: float = 0.0) -> trimesh.Trimesh:
    """Four vertical rods at ``(+-half_x, +-half_y)`` from ``z0`` to ``z0 + height``."""
    return trimesh.util.concatenate([rod(radius, [sx * half_x, sy * half_y, z0], [sx * half_x, sy * half_y, z0 + height])
                                     for sx in (-1, 1) for sy in (-1, 1)])


def chair(rng: np.random.Generator) -> Asset:
    """Dining chair: four thin legs, a seat and a back with two posts (front = +y)."""
    w, d = rng.uniform(0.40, 0.48), rng.uniform(0.40, 0.46)
    seat_h, back_h, leg_r = rng.uniform(0.43, 0.48), rng.uniform(0.38, 0.48), rng.uniform(0.013, 0.02)
    wood = tuple(rng.uniform([0.35, 0.2, 0.1], [0.6, 0.4, 0.25]))
    cloth = tuple(rng.uniform(0.15, 0.8, 3))
    parts = [Part("legs", legs(leg_r, w / 2 - 0.03, d / 2 - 0.03, seat_h - 0.04), wood, "wood", 0.05),
             Part("seat", box([w, d, 0.04], [0, 0, seat_h - 0.02]), cloth, "fabric", 0.03),
             Part("back", trimesh.util.concatenate([
                 box([w, 0.03, back_h * 0.45], [0, -d / 2 + 0.015, seat_h + back_h * 0.775]),
                 rod(leg_r, [-w / 2 + 0.03, -d / 2 + 0.015, seat_h], [-w / 2 + 0.03, -d / 2 + 0.015, seat_h + back_h]),
                 rod(leg_r, [w / 2 - 0.03, -d / 2 + 0.015, seat_h], [w / 2 - 0.03, -d / 2 + 0.015, seat_h + back_h])]),
                  wood, "wood", 0.05)]
    return Asset("chair", parts, (w, d), seat_h + back_h)


def table(rng: np.random.Generator, length: float, width: float) -> Asset:
    """Dining table: a top on four thin legs (long side along x)."""
    h, leg_r = rng.uniform(0.72, 0.77), rng.uniform(0.022, 0.032)
    wood = tuple(rng.uniform([0.45, 0.3, 0.15], [0.75, 0.55, 0.35]))
    parts = [Part("top", box([length, width, 0.04], [0, 0, h - 0.02]), wood, "wood", 0.08),
             Part("legs", legs(leg_r, length / 2 - 0.08, width / 2 - 0.08, h - 0.04), wood, "wood", 0.08)]
    return Asset("table", parts, (length, width), h)


def sofa(rng: np.random.Generator) -> Asset:
    """Sofa: base, back, two arms and seat cushions (front = +y)."""
    length, depth = rng.uniform(1.8, 2.2), rng.uniform(0.8, 0.95)
    seat_h, back_h, arm_w = rng.uniform(0.38, 0.45), rng.uniform(0.75, 0.85), rng.uniform(0.15, 0.22)
    cloth = tuple(rng.uniform(0.1, 0.7, 3))
    inner = length - 2 * arm_w
    n = int(rng.integers(2, 4))
    cushions = [box([inner / n - 0.02, depth - 0.25, 0.1], [-inner / 2 + (i + 0.5) * inner / n, 0.1, seat_h + 0.05])
                for i in range(n)]
    parts = [Part("base", box([length, depth, seat_h - 0.08], [0, 0, (seat_h - 0.08) / 2 + 0.08]), cloth, "fabric", 0.04),
             Part("feet", legs(0.025, length / 2 - 0.08, depth / 2 - 0.08, 0.08), (0.1, 0.08, 0.06), "plain"),
             Part("back", box([length, 0.22, back_h - seat_h + 0.1], [0, -depth / 2 + 0.11, (back_h + seat_h - 0.1) / 2]),
                  cloth, "fabric", 0.04),
             Part("arms", trimesh.util.concatenate([box([arm_w, depth, 0.62 - 0.08], [s * (length - arm_w) / 2, 0, 0.35])
                                                     for s in (-1, 1)]), cloth, "fabric", 0.04),
             Part("cushions", trimesh.util.concatenate(cushions), tuple(np.clip(np.array(cloth) * 1.2, 0, 1)),
                  "fabric", 0.03)]
    return Asset("sofa", parts, (length, depth), back_h)


def bed(rng: np.random.Generator) -> Asset:
    """Bed: frame, mattress, headboard at -y and two pillows."""
    length, width = rng.uniform(1.95, 2.1), rng.uniform(1.4, 1.65)
    frame_h, mat_h, head_h = rng.uniform(0.25, 0.32), rng.uniform(0.18, 0.24), rng.uniform(0.9, 1.1)
    wood = tuple(rng.uniform([0.3, 0.2, 0.1], [0.6, 0.45, 0.3]))
    sheet = tuple(rng.uniform(0.6, 0.95, 3))
    pillows = [box([width * 0.38, 0.35, 0.12], [s * width * 0.23, -length / 2 + 0.3, frame_h + mat_h + 0.06])
               for s in (-1, 1)]
    parts = [Part("frame", box([width, length, frame_h], [0, 0, frame_h / 2]), wood, "wood", 0.08),
             Part("mattress", box([width - 0.06, length - 0.1, mat_h], [0, 0.03, frame_h + mat_h / 2]), sheet,
                  "fabric", 0.05),
             Part("headboard", box([width + 0.04, 0.06, head_h], [0, -length / 2 - 0.01, head_h / 2]), wood, "wood",
                  0.08),
             Part("pillows", trimesh.util.concatenate(pillows), (0.92, 0.92, 0.9), "fabric", 0.03)]
    return Asset("bed", parts, (width + 0.04, length + 0.04), head_h)


def cabinet(rng: np.random.Generator, w: float, d: float, h: float, color) -> Asset:
    """Low cabinet with two door panels and thin handles (front = +y)."""
    parts = [Part("body", box([w, d, h], [0, 0, h / 2]), color, "wood", 0.1),
             Part("doors", trimesh.util.concatenate([box([w / 2 - 0.03, 0.01, h - 0.1], [s * w / 4, d / 2 + 0.005, h / 2])
                                                      for s in (-1, 1)]), tuple(np.clip(np.array(color) * 0.85, 0, 1)),
                  "plain"),
             Part("handles", trimesh.util.concatenate([rod(0.006, [s * 0.04, d / 2 + 0.025, h * 0.55],
                                                           [s * 0.04, d / 2 + 0.025, h * 0.75], 6) for s in (-1, 1)]),
                  (0.75, 0.75, 0.78), "metal")]
    return Asset("cabinet", parts, (w, d), h)


def television(rng: np.random.Generator) -> Asset:
    """Flat screen on a thin neck and a base plate (front = +y)."""
    w = rng.uniform(0.8, 1.1)
    h = w * 0.58
    parts = [Part("screen", box([w, 0.04, h], [0, 0, 0.12 + h / 2]), (0.05, 0.05, 0.06), "screen", 0.2),
             Part("stand", trimesh.util.concatenate([box([0.3, 0.2, 0.015], [0, 0, 0.0075]),
                                                      rod(0.015, [0, -0.01, 0.015], [0, -0.01, 0.14], 8)]),
                  (0.15, 0.15, 0.16), "metal")]
    return Asset("television", parts, (w, 0.2), 0.12 + h)


def floor_lamp(rng: np.random.Generator) -> Asset:
    """Floor lamp: base disk, a thin stem, a conical shade."""
    stem_h = rng.uniform(1.3, 1.55)
    shade = creation.cone(radius=0.2, height=0.28, sections=20)
    shade.apply_transform(trimesh.transformations.rotation_matrix(np.pi, [1, 0, 0]))
    shade.apply_translation([0, 0, stem_h + 0.28])
    metal = tuple(rng.uniform(0.1, 0.35, 3))
    parts = [Part("base", disk(0.16, 0.03, 0.0), metal, "metal"),
             Part("stem", rod(0.012, [0, 0, 0.03], [0, 0, stem_h + 0.05], 8), metal, "metal"),
             Part("shade", shade, tuple(rng.uniform(0.75, 0.95, 3)), "fabric", 0.03)]
    return Asset("lamp", parts, (0.4, 0.4), stem_h + 0.28)


def bag(rng: np.random.Generator) -> Asset:
    """Bag with a handle of thin rods."""
    w, d, h = rng.uniform(0.3, 0.42), rng.uniform(0.12, 0.2), rng.uniform(0.25, 0.35)
    color = tuple(rng.uniform(0.05, 0.9, 3))
    handle = trimesh.util.concatenate([rod(0.008, [-w / 4, 0, h], [-w / 6, 0, h + 0.12], 6),
                                       rod(0.008, [w / 4, 0, h], [w / 6, 0, h + 0.12], 6),
                                       rod(0.008, [-w / 6, 0, h + 0.12], [w / 6, 0, h + 0.12], 6)])
    parts = [Part("body", box([w, d, h], [0, 0, h / 2]), color, "fabric", 0.02),
             Part("handle", handle, tuple(np.array(color) * 0.6), "plain")]
    return Asset("bag", parts, (w, d), h + 0.12)


def refrigerator(rng: np.random.Generator) -> Asset:
    """Tall refrigerator with a door line and a long handle (front = +y)."""
    w, d, h = rng.uniform(0.6, 0.75), rng.uniform(0.62, 0.72), rng.uniform(1.7, 1.9)
    white = tuple(rng.uniform(0.82, 0.95, 3))
    parts = [Part("body", box([w, d, h], [0, 0, h / 2]), white, "metal"),
             Part("doors", trimesh.util.concatenate([box([w - 0.02, 0.01, h * 0.62], [0, d / 2 + 0.005, h * 0.31 + 0.01]),
                                                      box([w - 0.02, 0.01, h * 0.35], [0, d / 2 + 0.005, h * 0.81])]),
                  tuple(np.array(white) * 0.97), "plain"),
             Part("handle", rod(0.012, [w / 2 - 0.08, d / 2 + 0.04, h * 0.3], [w / 2 - 0.08, d / 2 + 0.04, h * 0.55], 8),
                  (0.6, 0.6, 0.62), "metal")]
    return Asset("refrigerator", parts, (w, d), h)


def shelves(rng: np.random.Generator) -> Asset:
    """Open bookshelf: two sides, a back and boards with book blocks."""
    w, d, h = rng.uniform(0.8, 1.0), 0.32, rng.uniform(1.6, 1.9)
    wood = tuple(rng.uniform([0.4, 0.3, 0.2], [0.7, 0.55, 0.4]))
    boards = [box([w, d, 0.025], [0, 0, z]) for z in np.linspace(0.05, h - 0.02, 5)]
    books = [box([w * rng.uniform(0.3, 0.7), 0.22, 0.22], [rng.uniform(-0.15, 0.15), 0.02, z + 0.125])
             for z in np.linspace(0.05, h - 0.02, 5)[:-1]]
    parts = [Part("frame", trimesh.util.concatenate([box([0.025, d, h], [s * w / 2, 0, h / 2]) for s in (-1, 1)]
                                                    + [box([w, 0.01, h], [0, -d / 2, h / 2])] + boards), wood, "wood",
                  0.06),
             Part("books", trimesh.util.concatenate(books), tuple(rng.uniform(0.2, 0.8, 3)), "fabric", 0.02)]
    return Asset("shelves", parts, (w, d), h)
