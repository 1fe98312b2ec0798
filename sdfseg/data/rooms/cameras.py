"""Camera paths through a room: a hand-held walk on a wobbly loop around the room's middle
that turns towards one furniture group after another (each group is seen from several
sides), at eye height with some bobbing, a little roll, and a few low close-ups.

Poses are camera-to-world in OpenCV axes (x right, y down, z forward).
"""

from __future__ import annotations

import numpy as np

from .layout import Room

HFOV_RANGE = (60.0, 68.0)
"""Horizontal field of view in degrees (ScanNet's colour camera is about 58 x 45 at 4:3)."""


def intrinsics(hw: tuple[int, int], hfov_deg: float) -> np.ndarray:
    """Pinhole ``K [3, 3]`` in the pixel-edge convention (principal point at the image centre)."""
    h, w = hw
    f = (w / 2) / np.tan(np.radians(hfov_deg) / 2)
    return np.array([[f, 0, w / 2], [0, f, h / 2], [0, 0, 1.0]])


def look_at(eye: np.ndarray, target: np.ndarray, roll: float = 0.0) -> np.ndarray:
    """OpenCV camera-to-world ``[4, 4]`` at ``eye`` looking at ``target`` (world up = +z), rolled by ``roll``."""
    fwd = target - eye
    fwd = fwd / np.linalg.norm(fwd)
    right = np.cross(fwd, [0.0, 0.0, 1.0])
    right /= np.linalg.norm(right)
    down = np.cross(fwd, right)
    c, s = np.cos(roll), np.sin(roll)
    right, down = c * right + s * down, -s * right + c * down
    m = np.eye(4)
    m[:3, 0], m[:3, 1], m[:3, 2], m[:3, 3] = right, down, fwd, eye
    return m


def _inside(boxes: list[np.ndarray], p: np.ndarray, margin: float = 0.25) -> bool:
    """True when ``p`` lies within ``margin`` of one of the boxes (``[2, 3]`` lower and upper corners)."""
    return any((p > lo - margin).all() and (p < hi + margin).all() for lo, hi in boxes)


def group_targets(room: Room) -> list[np.ndarray]:
    """A look-at point per furniture group: the centre of its bounding box, at most 0.9 m high."""
    out = []
    for idx in room.groups.values():
        lo = np.min([room.items[i].asset.mesh().bounds[0] for i in idx], axis=0)
        hi = np.max([room.items[i].asset.mesh().bounds[1] for i in idx], axis=0)
        c = (lo + hi) / 2
        c[2] = min(c[2], 0.9)
        out.append(c)
    return out


def camera_path(room: Room, n_views: int, rng: np.random.Generator) -> list[np.ndarray]:
    """``n_views`` camera-to-world poses (see the module docstring)."""
    lx, ly, h = room.size
    targets = group_targets(room)
    furniture = [it.asset.mesh().bounds for it in room.items if it.asset.cls not in ("wall", "floor", "ceiling")]
    order = rng.permutation(len(targets))
    a, b = lx / 2 - rng.uniform(1.0, 1.3), ly / 2 - rng.uniform(1.0, 1.3)
    theta0, turns = rng.uniform(0, 2 * np.pi), rng.choice([-1.0, 1.0])
    poses = []
    for i in range(n_views):
        theta = theta0 + turns * 2 * np.pi * i / n_views + rng.normal(0, 0.05)
        wobble = 1.0 + 0.15 * np.sin(3 * theta + 1.0) + rng.normal(0, 0.03)
        low = rng.random() < 0.12  # a close-up from lower down now and then
        eye = np.array([a * wobble * np.cos(theta), b * wobble * np.sin(theta),
                        rng.uniform(0.95, 1.15) if low else 1.45 + 0.15 * np.sin(5 * theta) + rng.normal(0, 0.04)])
        for _ in range(20):  # step towards the middle until the camera is clear of the furniture
            if not _inside(furniture, eye):
                break
            eye[:2] *= 0.85
        target = targets[order[(i // 2) % len(targets)]] + rng.normal(0, [0.35, 0.35, 0.12])
        if np.linalg.norm(target[:2] - eye[:2]) < 0.9:
            target[:2] = eye[:2] + 0.9 * (target[:2] - eye[:2] + 1e-6) / np.linalg.norm(target[:2] - eye[:2] + 1e-6)
        poses.append(look_at(eye, target, rng.normal(0, np.radians(2.0))))
    return poses
