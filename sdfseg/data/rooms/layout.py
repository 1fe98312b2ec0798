"""A furnished room, random per seed: walls, floor, ceiling, a door and a window, a dining
table with identical chairs side by side, a sofa with bags, a bed, a row of identical
cabinets with a television (and often a refrigerator), a floor lamp, shelves.

Furniture against a wall has its back to it; every footprint is checked against the
others (axis-aligned rectangles with a margin) and resampled on overlap. Classes follow
Panoptic Lifting's reduced ScanNet set, where chair, sofa, bed, television, bag and
refrigerator are things (instances) and table, cabinet, lamp, shelves, door, window,
wall, floor and ceiling are stuff.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..formats.common import PL_REDUCED_CLASSES, PL_REDUCED_NAMES
from . import assets as A

WALL_YAW = (0.0, np.pi / 2, np.pi, -np.pi / 2)
"""Yaw that turns an asset's front (+y) away from wall 0 (-y), 1 (+x), 2 (+y), 3 (-x) into the room."""


@dataclass
class Item:
    """A placed asset: its parts in world coordinates and its instance id (0 for stuff)."""

    asset: A.Asset
    instance: int = 0

    @property
    def cls_id(self) -> int:
        return PL_REDUCED_NAMES.index(self.asset.cls)


@dataclass
class Room:
    size: tuple[float, float, float]
    """Extent along x, y (the floor spans +-size/2) and the height (floor at z = 0)."""
    items: list[Item] = field(default_factory=list)
    groups: dict[str, list[int]] = field(default_factory=dict)
    """Indices of ``items`` that belong together (``dining``, ``sofa``, ``cabinets``, ``bed``, ...)."""
    light: tuple[float, float, float] = (0.0, 0.0, 2.5)

    def things(self) -> list[Item]:
        return [it for it in self.items if it.instance > 0]


def _rect(center, size, yaw, margin: float = 0.0) -> np.ndarray:
    """Axis-aligned footprint ``[x0, y0, x1, y1]`` of an asset of ``size`` (w, d) turned by a multiple of 90 deg."""
    w, d = size
    if round(yaw / (np.pi / 2)) % 2:
        w, d = d, w
    return np.array([center[0] - w / 2 - margin, center[1] - d / 2 - margin,
                     center[0] + w / 2 + margin, center[1] + d / 2 + margin])


def _overlaps(r: np.ndarray, others: list[np.ndarray]) -> bool:
    return any(r[0] < o[2] and o[0] < r[2] and r[1] < o[3] and o[1] < r[3] for o in others)


def _against_wall(wall: int, t: float, depth: float, lx: float, ly: float, gap: float = 0.02) -> np.ndarray:
    """Centre of an asset of ``depth`` with its back to ``wall`` at position ``t`` along it."""
    if wall == 0:
        return np.array([t, -ly / 2 + depth / 2 + gap])
    if wall == 1:
        return np.array([lx / 2 - depth / 2 - gap, t])
    if wall == 2:
        return np.array([-t, ly / 2 - depth / 2 - gap])
    return np.array([-lx / 2 + depth / 2 + gap, -t])


def _wall_length(wall: int, lx: float, ly: float) -> float:
    return lx if wall in (0, 2) else ly


def _shell(rng, lx: float, ly: float, h: float) -> list[A.Asset]:
    """Floor, ceiling and the four walls (0.1 m thick, outside the room's extent)."""
    t = 0.1
    wall = tuple(rng.uniform([0.6, 0.58, 0.52], [0.92, 0.9, 0.86]))
    floor_tex = "tiles" if rng.random() < 0.5 else "wood"
    floor_col = tuple(rng.uniform([0.3, 0.25, 0.2], [0.7, 0.6, 0.5]))
    out = [A.Asset("floor", [A.Part("floor", A.box([lx + 2 * t, ly + 2 * t, t], [0, 0, -t / 2]), floor_col, floor_tex,
                                    rng.uniform(0.3, 0.6))]),
           A.Asset("ceiling", [A.Part("ceiling", A.box([lx + 2 * t, ly + 2 * t, t], [0, 0, h + t / 2]),
                                      (0.93, 0.93, 0.92), "plaster", 0.5)])]
    walls = [A.box([lx + 2 * t, t, h], [0, -ly / 2 - t / 2, h / 2]), A.box([t, ly + 2 * t, h], [lx / 2 + t / 2, 0, h / 2]),
             A.box([lx + 2 * t, t, h], [0, ly / 2 + t / 2, h / 2]), A.box([t, ly + 2 * t, h], [-lx / 2 - t / 2, 0, h / 2])]
    out += [A.Asset("wall", [A.Part(f"wall{i}", m, wall, "plaster", 0.6)]) for i, m in enumerate(walls)]
    return out


def _wall_panel(cls: str, wall: int, t: float, width: float, z0: float, z1: float, lx: float, ly: float, color,
                texture: str) -> A.Asset:
    """A door or window: a 3 cm panel on the inside of ``wall`` centred at ``t`` along it."""
    c = _against_wall(wall, t, 0.03, lx, ly, gap=0.0)
    panel = A.Asset(cls, [A.Part(cls, A.box([width, 0.03, z1 - z0], [0, 0, (z0 + z1) / 2]), color, texture, 0.3)],
                    (width, 0.03), z1)
    return A.place(panel, WALL_YAW[wall], c)


def build_room(seed: int) -> Room:
    """The room of ``seed`` (see the module docstring)."""
    rng = np.random.default_rng([seed, 20261127])
    lx, ly, h = rng.uniform(5.8, 7.0), rng.uniform(4.8, 6.0), rng.uniform(2.6, 2.8)
    room = Room(size=(lx, ly, h), light=(rng.uniform(-0.5, 0.5), rng.uniform(-0.5, 0.5), h - 0.15))
    for a in _shell(rng, lx, ly, h):
        room.items.append(Item(a))
    taken: list[np.ndarray] = []
    next_id = [1]

    def add(asset: A.Asset, yaw: float, center, group: str, z: float = 0.0, thing: bool = False) -> None:
        room.items.append(Item(A.place(asset, yaw, center, z), next_id[0] if thing else 0))
        room.groups.setdefault(group, []).append(len(room.items) - 1)
        if thing:
            next_id[0] += 1

    def along_wall(wall: int, width: float, depth: float, tries: int = 200):
        span = _wall_length(wall, lx, ly) / 2 - width / 2 - 0.3
        for _ in range(tries):
            t = rng.uniform(-span, span)
            c = _against_wall(wall, t, depth, lx, ly)
            r = _rect(c, (width, depth), WALL_YAW[wall], 0.15)
            if not _overlaps(r, taken):
                taken.append(r)
                return t, c
        raise RuntimeError(f"room {seed}: no free place on wall {wall}")

    walls = [int(w) for w in rng.permutation(4)]
    # sofa with a bag on its seat and usually one on the floor beside it
    s = A.sofa(rng)
    _, c = along_wall(walls[0], s.footprint[0] + 1.2, s.footprint[1])
    add(s, WALL_YAW[walls[0]], c, "sofa", thing=True)
    yaw = WALL_YAW[walls[0]]
    rot = np.array([[np.cos(yaw), -np.sin(yaw)], [np.sin(yaw), np.cos(yaw)]])
    b = A.bag(rng)
    seat_z = float(s.parts[-1].mesh.bounds[1, 2])
    add(b, yaw + rng.uniform(-0.3, 0.3), c + rot @ [rng.uniform(-0.4, 0.4), 0.1], "sofa", z=seat_z, thing=True)
    if rng.random() < 0.8:
        add(A.bag(rng), yaw + rng.uniform(-0.5, 0.5), c + rot @ [s.footprint[0] / 2 + 0.3, 0.15], "sofa", thing=True)
    # bed, headboard to the wall
    bd = A.bed(rng)
    _, c = along_wall(walls[1], bd.footprint[0], bd.footprint[1])
    add(bd, WALL_YAW[walls[1]], c, "bed", thing=True)
    # a row of identical cabinets with a television on the middle one, often a refrigerator at the end
    n_cab = int(rng.integers(2, 4))
    cw, cd, ch = rng.uniform(0.6, 0.8), rng.uniform(0.42, 0.5), rng.uniform(0.75, 0.9)
    cab = A.cabinet(rng, cw, cd, ch, tuple(rng.uniform([0.3, 0.25, 0.2], [0.85, 0.75, 0.65])))
    fridge = A.refrigerator(rng) if rng.random() < 0.7 else None
    row_w = n_cab * (cw + 0.005) + (fridge.footprint[0] + 0.03 if fridge else 0.0)
    row_d = max(cd, fridge.footprint[1] if fridge else 0.0)
    _, c = along_wall(walls[2], row_w, row_d)
    yaw = WALL_YAW[walls[2]]
    rot = np.array([[np.cos(yaw), -np.sin(yaw)], [np.sin(yaw), np.cos(yaw)]])
    x = -row_w / 2 + cw / 2
    for i in range(n_cab):  # backs to the wall: each item sits (row_d - its depth) / 2 nearer to it
        add(cab, yaw, c + rot @ [x, (cd - row_d) / 2], "cabinets")
        if i == n_cab // 2:
            add(A.television(rng), yaw, c + rot @ [x, (cd - row_d) / 2 - 0.02], "cabinets", z=ch, thing=True)
        x += cw + 0.005
    if fridge is not None:
        x += fridge.footprint[0] / 2 - cw / 2 + 0.025
        add(fridge, yaw, c + rot @ [x, (fridge.footprint[1] - row_d) / 2], "cabinets", thing=True)
    # shelves on the last wall (often), a lamp in a free corner
    if rng.random() < 0.7:
        sh = A.shelves(rng)
        _, c = along_wall(walls[3], sh.footprint[0], sh.footprint[1])
        add(sh, WALL_YAW[walls[3]], c, "shelves")
    lamp = A.floor_lamp(rng)
    corners = [np.array([sx * (lx / 2 - 0.35), sy * (ly / 2 - 0.35)]) for sx in (-1, 1) for sy in (-1, 1)]
    for k in rng.permutation(4):
        r = _rect(corners[k], (0.4, 0.4), 0.0, 0.05)
        if not _overlaps(r, taken):
            taken.append(r)
            add(lamp, 0.0, corners[k], "lamp")
            break
    _dining(rng, room, taken, add, lx, ly)
    # a door and a window where the wall is free
    for cls, width, z0, z1, color, tex in (("door", 0.9, 0.0, 2.05, tuple(rng.uniform(0.35, 0.8, 3)), "wood"),
                                           ("window", 1.2, 0.9, 2.0, (0.75, 0.85, 0.95), "screen")):
        for _ in range(200):
            wall = int(rng.integers(4))
            span = _wall_length(wall, lx, ly) / 2 - width / 2 - 0.2
            t = rng.uniform(-span, span)
            r = _rect(_against_wall(wall, t, 0.6, lx, ly, gap=0.0), (width, 0.6), WALL_YAW[wall])
            if not _overlaps(r, taken):
                taken.append(r)
                room.items.append(Item(_wall_panel(cls, wall, t, width, z0, z1, lx, ly, color, tex)))
                break
    return room


def _dining(rng, room: Room, taken: list, add, lx: float, ly: float) -> None:
    """Table (free-standing, long side along x or y) with two identical chairs side by side on each long
    side, sometimes one more at an end; chairs partly pushed under the top."""
    length, width = rng.uniform(1.45, 1.8), rng.uniform(0.8, 0.9)
    tab = A.table(rng, length, width)
    ch = A.chair(rng)
    tuck = rng.uniform(0.05, 0.15)
    depth = width + 2 * (ch.footprint[1] - tuck)
    ends = rng.random() < 0.4
    span = length + (2 * (ch.footprint[1] - tuck) if ends else 0.0)
    along_y = rng.random() < 0.5
    for _ in range(500):
        c = rng.uniform([-lx / 2 + 1.0, -ly / 2 + 1.0], [lx / 2 - 1.0, ly / 2 - 1.0])
        r = _rect(c, (span, depth), np.pi / 2 if along_y else 0.0, 0.35)
        if not _overlaps(r, taken):
            taken.append(r)
            break
    else:
        raise RuntimeError("no free place for the dining table")
    base = np.pi / 2 if along_y else 0.0
    rot = np.array([[np.cos(base), -np.sin(base)], [np.sin(base), np.cos(base)]])
    add(tab, base, c, "dining")
    off = width / 2 + ch.footprint[1] / 2 - tuck
    for side, yaw in ((-1, 0.0), (1, np.pi)):
        for x in (-length / 4, length / 4):
            add(ch, base + yaw, c + rot @ [x, side * off], "dining", thing=True)
    if ends:
        add(ch, base + np.pi / 2, c + rot @ [length / 2 + ch.footprint[1] / 2 - tuck, 0.0], "dining", thing=True)


CLASSES = PL_REDUCED_CLASSES
"""The class set every room is labelled in."""
