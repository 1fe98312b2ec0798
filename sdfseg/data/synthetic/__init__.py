"""Procedural synthetic scenes with exact ground truth (geometry, labels, hierarchy).

A 6 x 5 x 3 m room (wall, floor, ceiling as stuff) holds furniture built from analytic
SDF primitives; each object is made of parts and belongs to a group. Views are sphere
traced along a smooth camera loop and written in the Panoptic Lifting layout together
with simulated Mask2Former-like labels and SAM-like multi-granular masks
(:func:`generate_scene`; :func:`random_scene` only draws the scene description).
``synthetic.json`` describes the scene exactly, so the GT SDF can be evaluated later
with :func:`load_synthetic`.
"""

from .layout import random_scene
from .model import CLASS_NAMES, STUFF_IDS, THING_IDS, Room, SceneObject, SyntheticScene, load_synthetic
from .primitives import Part
from .render import RenderedView, render_view
from .writer import CLASSES, generate_scene

__all__ = ["CLASSES", "CLASS_NAMES", "STUFF_IDS", "THING_IDS", "Part", "RenderedView", "Room", "SceneObject",
           "SyntheticScene", "generate_scene", "load_synthetic", "random_scene", "render_view"]
