"""Furnished rooms built from triangle meshes and ray-cast: a scene family independent of the
demo's generator (``sdfseg.data.synthetic``), with its own geometry, layout, camera paths and
label noise. ``generate_room(path, seed)`` writes one in the Panoptic Lifting layout."""

from .noise import M2FNoise
from .writer import generate_room

__all__ = ["M2FNoise", "generate_room"]
