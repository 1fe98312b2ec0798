"""Readers for on-disk scene layouts, with auto-detection.

Each reader module exposes ``NAME`` (the layout's name for ``data.layout``),
``detect(path) -> bool`` (cheap check of marker files) and
``read(path, options: ReadOptions) -> Scene``. Add a layout by writing such a
module and listing it in ``_MODULES``: detection tries them in that order, the layouts
with the most specific markers first (a ClusteringSDF folder converted from Panoptic
Lifting data may keep ``pose/`` and ``intrinsic/``; its ``cameras.npz`` decides).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from ...errors import SdfsegError
from ..scene import Scene

_MODULES = [
    "clusteringsdf",
    "messy_rooms",
    "objectsdf",
    "panoptic_lifting",
    "transforms_json",
    "colmap",
]


@dataclass
class ReadOptions:
    """Options common to all readers."""

    image_size: tuple[int, int] | None = None
    """Resize images and maps to (height, width) on load (labels with nearest neighbour); None keeps them."""
    label_source: str = "m2f"
    """Name under which the reader stores the layout's noisy 2D labels in ``Scene.labels``."""
    max_frames: int | None = None
    """Keep at most this many frames (evenly spaced), for quick experiments."""
    crop: str = "auto"
    """Layouts with a MonoSDF ``cameras.npz``: MonoSDF's ``center_crop_type`` of the dataset (``no_crop``,
    ``center_crop_for_replica``, ``center_crop_for_tnt``, ``center_crop_for_dtu``, ``padded_for_dtu``).
    ``auto``: objectsdf uses K as stored when its principal point lies inside the image and refuses
    otherwise; clusteringsdf uses K as stored (its reference applies no crop)."""
    normals: bool = True
    """Keep the layout's normal maps in ``Scene.normals``. False: every normal file is still read and checked
    (a broken file fails the same way), but ``Scene.normals`` is None (training without normal losses,
    :func:`sdfseg.training.trainer.read_options`)."""
    gt_frames: str = "all"
    """``"all"``: GT label maps of every frame. ``"test"``: a reader may keep the GT maps (``Scene.gt``) of the
    test split only, as :class:`~sdfseg.data.scene.FrameSubset` (indexing another frame raises); every GT file
    is still read and checked. The Panoptic Lifting reader does so unless the scene has hierarchy GT
    (``gt_part/``, ``gt_group/``, whose ``object`` level is the GT instance maps); the other readers keep all."""


def _modules() -> list[ModuleType]:
    return [importlib.import_module(f"{__name__}.{m}") for m in _MODULES]


def layout_names() -> list[str]:
    return [m.NAME for m in _modules()]


def detect_layout(path: str | Path) -> str:
    """Name of the first layout whose markers are found in ``path``."""
    path = Path(path)
    if not path.is_dir():
        raise SdfsegError(f"{path}: scene folder not found")
    for mod in _modules():
        if mod.detect(path):
            return mod.NAME
    raise SdfsegError(f"{path}: unrecognised scene layout (known layouts: {', '.join(layout_names())}); "
                      "set data.layout explicitly")


def load_scene(path: str | Path, layout: str = "auto", options: ReadOptions | None = None) -> Scene:
    """Read the scene at ``path`` in world units (see :mod:`sdfseg.data.scene` for conventions).

    With ``layout="auto"`` the detected layout is printed as one line on stdout
    (``layout: clusteringsdf (auto-detected)``).
    """
    path = Path(path)
    if not path.is_dir():
        raise SdfsegError(f"{path}: scene folder not found")
    options = options or ReadOptions()
    if options.gt_frames not in ("all", "test"):
        raise SdfsegError(f"ReadOptions.gt_frames: expected 'all' or 'test', got {options.gt_frames!r}")
    name = layout
    if layout == "auto":
        name = detect_layout(path)
        print(f"layout: {name} (auto-detected)", flush=True)
    for mod in _modules():
        if mod.NAME == name:
            scene = mod.read(path, options)
            scene.layout = name
            return scene
    raise SdfsegError(f"data.layout: unknown layout '{layout}' (expected auto or one of {', '.join(layout_names())})")
