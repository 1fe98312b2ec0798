"""Furniture built from primitives, in an object-local frame.

Local frame: origin at the centre of the object's footprint on the floor, z up,
the object's "front" facing -y (a chair's seat faces -y, its back is at +y).
Each builder draws its sizes from ``rng`` and returns a :class:`Template`: a
list of parts plus the footprint rectangle the layout uses to avoid collisions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

THING_CLASSES: tuple[str, ...] = ("table", "chair", "cabinet", "lamp", "vase", "ball", "stool", "sofa", "box")
"""Thing class names, in class-id order after the stuff classes."""
STUFF_CLASSES: tuple[str, ...] = ("wall", "floor", "ceiling")
"""Stuff class names; class ids 1, 2, 3 (0 is void)."""


@dataclass
class PartSpec:
    """A primitive in the object's local frame."""

    name: str
    kind: str
    params: dict
    center: tuple[float, float, float]
    yaw: float = 0.0


@dataclass
class Template:
    """An object before placement."""

    cls: str
    parts: list[PartSpec]
    half_xy: tuple[float, float]
    """Half extents of the footprint rectangle (local x, y), centred at the origin."""
    height: float


def _u(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(rng.uniform(lo, hi))


def _legs(hx: float, hy: float, inset: float, radius: float, height: float) -> list[PartSpec]:
    """Four vertical cylinder legs from the floor up to ``height`` at the corners."""
    return [PartSpec("leg", "cylinder", {"radius": radius, "half_height": height / 2},
                     (sx * (hx - inset), sy * (hy - inset), height / 2))
            for sx in (-1, 1) for sy in (-1, 1)]


def table(rng: np.random.Generator) -> Template:
    """Rounded top on four cylinder legs."""
    hx, hy, h = _u(rng, 0.5, 0.75), _u(rng, 0.35, 0.45), _u(rng, 0.70, 0.78)
    t = 0.025
    top = PartSpec("top", "round_box", {"half": [hx, hy, t], "radius": 0.012}, (0.0, 0.0, h - t))
    return Template("table", [top] + _legs(hx, hy, 0.07, 0.03, h - 2 * t), (hx, hy), h)


def chair(rng: np.random.Generator) -> Template:
    """Seat, backrest at +y and four legs; at most 0.46 x 0.46 m."""
    s, seat_h, back_h = _u(rng, 0.19, 0.23), _u(rng, 0.42, 0.47), _u(rng, 0.35, 0.45)
    t = 0.025
    seat = PartSpec("seat", "box", {"half": [s, s, t]}, (0.0, 0.0, seat_h - t))
    back = PartSpec("back", "box", {"half": [s, 0.02, back_h / 2]}, (0.0, s - 0.02, seat_h + back_h / 2))
    return Template("chair", [seat, back] + _legs(s, s, 0.03, 0.02, seat_h - 2 * t), (s, s), seat_h + back_h)


def cabinet(rng: np.random.Generator) -> Template:
    """A box body with a vertical capsule handle on its front face."""
    hx, hy, h = _u(rng, 0.25, 0.45), _u(rng, 0.2, 0.25), _u(rng, 0.6, 1.2)
    r = 0.015
    body = PartSpec("body", "box", {"half": [hx, hy, h / 2]}, (0.0, 0.0, h / 2))
    handle = PartSpec("handle", "capsule", {"radius": r, "half_length": 0.08},
                      (hx * 0.6, -hy - r, h * 0.7))
    return Template("cabinet", [body, handle], (hx, hy + 2 * r), h)


def lamp(rng: np.random.Generator) -> Template:
    """Floor lamp: base disc, thin pole, spherical shade."""
    pole_h, shade_r = _u(rng, 1.0, 1.3), _u(rng, 0.12, 0.18)
    base_r = _u(rng, 0.13, 0.17)
    base = PartSpec("base", "cylinder", {"radius": base_r, "half_height": 0.015}, (0.0, 0.0, 0.015))
    pole = PartSpec("pole", "cylinder", {"radius": 0.02, "half_height": pole_h / 2}, (0.0, 0.0, 0.03 + pole_h / 2))
    shade = PartSpec("shade", "sphere", {"radius": shade_r}, (0.0, 0.0, 0.03 + pole_h + shade_r * 0.8))
    r = max(base_r, shade_r)
    return Template("lamp", [base, pole, shade], (r, r), 0.03 + pole_h + 1.8 * shade_r)


def vase(rng: np.random.Generator) -> Template:
    """Small cylinder body with a torus rim on top."""
    r, h = _u(rng, 0.07, 0.12), _u(rng, 0.2, 0.45)
    rim = 0.02
    body = PartSpec("body", "cylinder", {"radius": r, "half_height": h / 2}, (0.0, 0.0, h / 2))
    top = PartSpec("rim", "torus", {"major": r, "minor": rim}, (0.0, 0.0, h))
    return Template("vase", [body, top], (r + rim, r + rim), h + rim)


def ball(rng: np.random.Generator) -> Template:
    """A sphere resting on the floor (small)."""
    r = _u(rng, 0.1, 0.2)
    return Template("ball", [PartSpec("sphere", "sphere", {"radius": r}, (0.0, 0.0, r))], (r, r), 2 * r)


def stool(rng: np.random.Generator) -> Template:
    """Round seat on three capsule legs."""
    r, h = _u(rng, 0.15, 0.2), _u(rng, 0.4, 0.6)
    t, lr = 0.03, 0.02
    seat = PartSpec("seat", "cylinder", {"radius": r, "half_height": t}, (0.0, 0.0, h - t))
    legs = []
    for k in range(3):
        a = 2 * np.pi * k / 3
        hl = (h - 2 * t - 2 * lr) / 2
        legs.append(PartSpec("leg", "capsule", {"radius": lr, "half_length": hl},
                             (0.7 * r * np.cos(a), 0.7 * r * np.sin(a), lr + hl)))
    return Template("stool", [seat] + legs, (r, r), h)


def sofa(rng: np.random.Generator) -> Template:
    """Rounded-box base, backrest (+y) and two arms."""
    hx, hy = _u(rng, 0.75, 1.0), _u(rng, 0.38, 0.45)
    seat_h, back_h, arm = _u(rng, 0.4, 0.45), _u(rng, 0.35, 0.45), 0.1
    base = PartSpec("base", "round_box", {"half": [hx - 2 * arm, hy - 0.08, seat_h / 2], "radius": 0.04},
                    (0.0, -0.08, seat_h / 2))
    back = PartSpec("back", "round_box", {"half": [hx, 0.08, (seat_h + back_h) / 2], "radius": 0.04},
                    (0.0, hy - 0.08, (seat_h + back_h) / 2))
    arms = [PartSpec("arm", "round_box", {"half": [arm, hy - 0.08, seat_h * 0.65], "radius": 0.04},
                     (s * (hx - arm), -0.08, seat_h * 0.65)) for s in (-1, 1)]
    return Template("sofa", [base, back] + arms, (hx, hy), seat_h + back_h)


def storage_box(rng: np.random.Generator) -> Template:
    """A small rounded box."""
    hx, hy, hz = _u(rng, 0.12, 0.22), _u(rng, 0.12, 0.2), _u(rng, 0.1, 0.2)
    part = PartSpec("box", "round_box", {"half": [hx, hy, hz], "radius": 0.015}, (0.0, 0.0, hz))
    return Template("box", [part], (hx, hy), 2 * hz)


BUILDERS: dict[str, Callable[[np.random.Generator], Template]] = {
    "table": table, "chair": chair, "cabinet": cabinet, "lamp": lamp, "vase": vase,
    "ball": ball, "stool": stool, "sofa": sofa, "box": storage_box,
}
