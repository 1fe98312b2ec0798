"""Procedural room layout: object groups, collision-free placement, colours and textures.

Objects come in GROUPS: a dining set (a table with chairs around it), a cluster
(a cabinet or sofa with one or two objects standing flush against its sides, so
they touch) or a lone object (its own group). Groups are placed on the floor of
a 6 x 5 x 3 m room by rejection sampling: objects of different groups keep a gap,
and every object keeps its distance from the camera trajectory.
"""

from __future__ import annotations

import colorsys
from dataclasses import dataclass

import numpy as np

from ...errors import SdfsegError
from .cameras import sample_trajectory_params, trajectory_positions
from .model import Room, SceneObject, SyntheticScene
from .objects import BUILDERS, Template
from .primitives import Part, aabb_distance, yaw_matrix

ROOM_SIZE: tuple[float, float, float] = (6.0, 5.0, 3.0)
GROUP_GAP = 0.25
"""Minimum gap (m) between the footprints of objects of different groups."""
CAMERA_CLEARANCE = 0.4
"""Minimum distance (m) between the camera trajectory and any object's bounding box."""
WALL_GAP = 0.05
SINGLE_CLASSES = ("cabinet", "lamp", "vase", "ball", "stool", "sofa", "box", "chair", "table")
CLUSTER_ANCHORS = ("cabinet", "sofa")
CLUSTER_NEIGHBOURS = ("box", "vase", "cabinet", "ball")
"""Neighbours whose widest point is low enough to touch every anchor's side face."""


@dataclass
class Member:
    """An object in its group's frame."""

    template: Template
    xy: tuple[float, float]
    yaw: float


def dining_group(rng: np.random.Generator, num_chairs: int) -> list[Member]:
    """A table with 1..4 chairs facing it, seats under the top; some pushed in to touch the top's edge."""
    table = BUILDERS["table"](rng)
    hx, hy = table.half_xy
    members = [Member(table, (0.0, 0.0), 0.0)]
    long_sides = [(0, -1, np.pi), (0, 1, 0.0)]
    order = long_sides if rng.random() < 0.5 else long_sides[::-1]
    sides = order + [(-1, 0, np.pi / 2), (1, 0, -np.pi / 2)]
    for sx, sy, yaw in sides[:num_chairs]:
        chair = BUILDERS["chair"](rng)
        s = chair.half_xy[0]
        # pushed in until the backrest touches the top's edge (30%), else pulled out 0..15 cm
        pull = 0.16 - 2 * s if rng.random() < 0.3 else float(rng.uniform(0.0, 0.15))
        if sx == 0:
            xy = (float(rng.uniform(-0.04, 0.04)), sy * (hy + s - 0.12 + pull))
        else:
            xy = (sx * (hx + s - 0.12 + pull), 0.0)
        members.append(Member(chair, xy, yaw))
    return members


def cluster_group(rng: np.random.Generator, size: int) -> list[Member]:
    """An anchor (cabinet or sofa) with ``size - 1`` objects standing flush against its sides."""
    anchor = BUILDERS[str(rng.choice(CLUSTER_ANCHORS))](rng)
    members = [Member(anchor, (0.0, 0.0), 0.0)]
    ahx, ahy = anchor.half_xy
    for side in (1, -1)[:size - 1]:
        nb = BUILDERS[str(rng.choice(CLUSTER_NEIGHBOURS))](rng)
        bhx, bhy = nb.half_xy
        slack = max(ahy - bhy, 0.0)
        members.append(Member(nb, (side * (ahx + bhx), float(rng.uniform(-slack, slack))), 0.0))
    return members


def plan_groups(num_objects: int, rng: np.random.Generator) -> list[list[Member]]:
    """Split ``num_objects`` into groups: one dining set, one touching cluster, then a mix."""
    groups: list[list[Member]] = []
    left = num_objects
    if left >= 2:
        chairs = int(min(rng.integers(1, 4), left - 1 - (2 if left >= 4 else 0)))
        groups.append(dining_group(rng, max(chairs, 1)))
        left -= len(groups[-1])
    if left >= 2:
        size = 3 if left >= 4 and rng.random() < 0.4 else 2
        groups.append(cluster_group(rng, size))
        left -= size
    while left > 0:
        if left >= 2 and rng.random() < 0.3:
            groups.append(cluster_group(rng, 2))
        else:
            groups.append([Member(BUILDERS[str(rng.choice(SINGLE_CLASSES))](rng), (0.0, 0.0), 0.0)])
        left -= len(groups[-1])
    return groups


def _member_box(m: Member, origin: np.ndarray, yaw: float) -> np.ndarray:
    """World 3D bounding box ``[2, 3]`` of a member's footprint x height when its group is placed."""
    rot = yaw_matrix(yaw)[:2, :2]
    center = origin + rot @ np.asarray(m.xy)
    corners = np.array([[sx, sy] for sx in (-1, 1) for sy in (-1, 1)]) * np.asarray(m.template.half_xy)
    corners = center + corners @ (rot @ yaw_matrix(m.yaw)[:2, :2]).T
    return np.array([[*corners.min(axis=0), 0.0], [*corners.max(axis=0), m.template.height]])


def _fits(boxes: list[np.ndarray], placed: list[np.ndarray], room_half: np.ndarray, cams: np.ndarray) -> bool:
    for b in boxes:
        if np.any(b[0, :2] < -room_half[:2] + WALL_GAP) or np.any(b[1, :2] > room_half[:2] - WALL_GAP):
            return False
        for q in placed:
            if np.all(b[0, :2] < q[1, :2] + GROUP_GAP) and np.all(q[0, :2] < b[1, :2] + GROUP_GAP):
                return False
        if aabb_distance(cams, b).min() < CAMERA_CLEARANCE:
            return False
    return True


def place_groups(groups: list[list[Member]], room_half: np.ndarray, cams: np.ndarray,
                 rng: np.random.Generator, tries: int = 300, restarts: int = 40) -> list[tuple[np.ndarray, float]]:
    """Group origins and yaws (``[(xy [2], yaw)]``) with no collisions; largest groups first.

    ``cams`` ``[T, 3]`` are points along the camera trajectory that objects must keep clear of.
    """
    area = [np.prod(np.ptp(np.concatenate([_member_box(m, np.zeros(2), 0.0) for m in g]), axis=0)[:2])
            for g in groups]
    order = np.argsort(-np.asarray(area), kind="stable")
    for _ in range(restarts):
        placed: list[np.ndarray] = []
        poses: dict[int, tuple[np.ndarray, float]] = {}
        for gi in order:
            for _ in range(tries):
                origin = rng.uniform(-room_half[:2], room_half[:2])
                yaw = float(rng.integers(0, 4) * np.pi / 2 + rng.uniform(-0.25, 0.25))
                boxes = [_member_box(m, origin, yaw) for m in groups[gi]]
                if _fits(boxes, placed, room_half, cams):
                    placed += boxes
                    poses[int(gi)] = (origin, yaw)
                    break
            else:
                break
        if len(poses) == len(groups):
            return [poses[i] for i in range(len(groups))]
    n = sum(len(g) for g in groups)
    raise SdfsegError(f"--objects {n}: cannot place that many objects in the {ROOM_SIZE[0]:g} x "
                      f"{ROOM_SIZE[1]:g} m room without collisions; use fewer objects")


def _hsv(h: float, s: float, v: float) -> np.ndarray:
    return np.clip(np.array(colorsys.hsv_to_rgb(h % 1.0, np.clip(s, 0, 1), np.clip(v, 0, 1))), 0.0, 1.0)


def _pattern(rng: np.random.Generator, origin: np.ndarray) -> dict:
    kind = str(rng.choice(["plain", "stripes", "checker", "rings"]))
    direction = rng.normal(size=3)
    return {"kind": kind, "period": float(rng.uniform(0.06, 0.2)), "amplitude": float(rng.uniform(0.15, 0.35)),
            "direction": [float(x) for x in direction / np.linalg.norm(direction)],
            "origin": [float(x) for x in origin]}


def build_objects(groups: list[list[Member]], poses: list[tuple[np.ndarray, float]],
                  rng: np.random.Generator) -> list[SceneObject]:
    """Place every member's parts in the world and give objects ids, colours and textures."""
    objects: list[SceneObject] = []
    part_id, hue0 = 0, float(rng.uniform())
    for gi, (group, (origin, gyaw)) in enumerate(zip(groups, poses)):
        grot = yaw_matrix(gyaw)
        for m in group:
            oid = len(objects) + 1
            center = np.array([*origin, 0.0]) + grot @ np.array([*m.xy, 0.0])
            orot = grot @ yaw_matrix(m.yaw)
            hue, sat, val = hue0 + 0.618034 * oid, rng.uniform(0.45, 0.85), rng.uniform(0.5, 0.9)
            parts = []
            for spec in m.template.parts:
                part_id += 1
                albedo = _hsv(hue + rng.uniform(-0.03, 0.03), sat * rng.uniform(0.85, 1.1),
                              val * rng.uniform(0.75, 1.1))
                parts.append(Part(part_id, spec.name, spec.kind, dict(spec.params),
                                  center + orot @ np.asarray(spec.center, dtype=np.float64),
                                  orot @ yaw_matrix(spec.yaw), albedo))
            objects.append(SceneObject(oid, m.template.cls, gi + 1, parts, _pattern(rng, center)))
    return objects


def room_appearance(rng: np.random.Generator) -> Room:
    """The room box with random pale wall tints, a two-tone tiled floor and a light ceiling."""
    walls = np.stack([_hsv(rng.uniform(), rng.uniform(0.08, 0.2), rng.uniform(0.72, 0.88)) for _ in range(4)])
    wood = rng.uniform(0.05, 0.12)
    floor = np.stack([_hsv(wood, 0.45, 0.55), _hsv(wood + 0.02, 0.5, 0.4)])
    return Room(np.asarray(ROOM_SIZE) / 2, walls, floor, _hsv(0.0, 0.0, 0.92), float(rng.uniform(0.4, 0.6)))


def random_scene(num_objects: int, seed: int) -> SyntheticScene:
    """A random room with ``num_objects`` objects; the same seed gives the same scene."""
    if num_objects < 1:
        raise SdfsegError(f"--objects: expected at least 1 object, got {num_objects}")
    rng = np.random.default_rng([int(seed), 0])
    room = room_appearance(rng)
    traj = sample_trajectory_params(room.half, rng)
    cams = trajectory_positions(traj, np.linspace(0, 2 * np.pi, 720, endpoint=False))
    groups = plan_groups(num_objects, rng)
    poses = place_groups(groups, room.half, cams, rng)
    objects = build_objects(groups, poses, rng)
    light = {"position": [float(rng.uniform(-1, 1)), float(rng.uniform(-1, 1)), 2.7],
             "ambient": 0.35, "diffuse": 0.75}
    return SyntheticScene(room, objects, light, int(seed), {"trajectory": traj})
