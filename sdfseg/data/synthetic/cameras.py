"""Camera intrinsics and the smooth camera trajectory inside the synthetic room.

The trajectory is an ellipse around the room's centre, ``margin`` metres from the
walls, with the height oscillating in [1.2, 1.8] m and the look-at target
wandering around the middle of the room, so views see the objects from all
sides with varied framing. Poses are camera-to-world with OpenCV axes
(x right, y down, z forward).
"""

from __future__ import annotations

import numpy as np


def intrinsics(height: int, width: int, hfov_deg: float = 75.0) -> np.ndarray:
    """Pinhole ``K`` ``[3, 3]`` with square pixels, the principal point at the image centre."""
    f = 0.5 * width / np.tan(np.deg2rad(hfov_deg) / 2)
    return np.array([[f, 0.0, width / 2], [0.0, f, height / 2], [0.0, 0.0, 1.0]])


def look_at(position: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Camera-to-world ``[4, 4]`` (OpenCV axes) at ``position`` looking at ``target``, world z up."""
    fwd = target - position
    fwd = fwd / np.linalg.norm(fwd)
    right = np.cross(fwd, np.array([0.0, 0.0, 1.0]))
    right = right / np.linalg.norm(right)
    down = np.cross(fwd, right)
    c2w = np.eye(4)
    c2w[:3, 0], c2w[:3, 1], c2w[:3, 2], c2w[:3, 3] = right, down, fwd, position
    return c2w


def sample_trajectory_params(room_half: np.ndarray, rng: np.random.Generator, margin: float = 0.55) -> dict:
    """Random smooth-trajectory parameters for a room with half extents ``[3]``."""
    return {"a": float(room_half[0] - margin), "b": float(room_half[1] - margin),
            "theta0": float(rng.uniform(0, 2 * np.pi)), "direction": float(rng.choice([-1.0, 1.0])),
            "phases": [float(x) for x in rng.uniform(0, 2 * np.pi, size=4)],
            "height": [1.2, 1.8], "target_height": 0.5}


def trajectory_positions(params: dict, theta: np.ndarray) -> np.ndarray:
    """Camera centres ``[T, 3]`` at trajectory angles ``theta`` ``[T]`` (radians from theta0)."""
    ang = params["theta0"] + params["direction"] * theta
    lo, hi = params["height"]
    z = (lo + hi) / 2 + (hi - lo) / 2 * np.sin(2 * theta + params["phases"][0])
    return np.stack([params["a"] * np.cos(ang), params["b"] * np.sin(ang), z], axis=-1)


def trajectory_targets(params: dict, theta: np.ndarray) -> np.ndarray:
    """Look-at targets ``[T, 3]`` wandering around the room centre."""
    ph = params["phases"]
    x = 0.35 * params["a"] * np.cos(3 * theta + ph[1])
    y = 0.35 * params["b"] * np.sin(2 * theta + ph[2])
    z = params["target_height"] + 0.25 * np.sin(5 * theta + ph[3])
    return np.stack([x, y, z], axis=-1)


def trajectory_poses(params: dict, num_views: int) -> np.ndarray:
    """Camera-to-world poses ``[V, 4, 4]`` evenly spaced along one loop of the trajectory."""
    theta = 2 * np.pi * np.arange(num_views) / max(num_views, 1)
    pos, tgt = trajectory_positions(params, theta), trajectory_targets(params, theta)
    return np.stack([look_at(p, t) for p, t in zip(pos, tgt)]) if num_views else np.zeros((0, 4, 4))


def split_frames(num_views: int, every: int = 5, offset: int = 2) -> tuple[list[int], list[int]]:
    """Train/test frame indices: every ``every``-th frame starting at ``offset`` is a test view."""
    test = [i for i in range(num_views) if i % every == offset]
    train = [i for i in range(num_views) if i % every != offset]
    return train, test
