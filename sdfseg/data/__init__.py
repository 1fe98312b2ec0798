"""Scenes: the in-memory model, on-disk readers, synthetic scenes and label simulation."""

from .formats import ReadOptions, detect_layout, load_scene
from .scene import ClassInfo, LabelSource, Normalization, Scene

__all__ = ["ClassInfo", "LabelSource", "Normalization", "ReadOptions", "Scene", "detect_layout", "load_scene"]
