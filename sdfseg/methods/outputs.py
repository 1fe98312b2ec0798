"""What a method's output slots are and the test maps a finished run writes.

:class:`ChannelTable` says what each slot a method renders is (an object channel, a code, a class): an
object of some class with an instance id, or background. :func:`render_view` renders one view into rgb,
depth, normals, instance and semantic ids, asking the method which slot each pixel shows
(:meth:`~sdfseg.methods.Method.owner`); :func:`write_test_views` writes the test frames' maps.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..core.model import SceneModel
from ..core.render.views import render_rays_chunked, surface_normals
from ..data.rays import view_rays
from ..data.scene import ClassInfo, Scene
from ..io import save_image_atomic, save_label_png, write_json_atomic
from ..progress import progress_iter

if TYPE_CHECKING:
    from . import Method


@dataclass
class ChannelTable:
    """What each SDF channel is: an object (instance id = channel index) of some class, or background."""

    is_object: np.ndarray  # bool [K]
    classes: np.ndarray  # int64 [K] semantic class per channel (0 for background)
    votes: np.ndarray = field(default_factory=lambda: np.zeros(0))  # [K] number of voting pixels
    instance: np.ndarray | None = None
    """int64 ``[K]`` instance id of each channel, always 0 for background channels (set here, so
    ``instance[owner]`` is the rendered id); channels merged into one object share the id of their
    representative channel. Default: the channel index for objects."""

    def __post_init__(self) -> None:
        ids = np.arange(len(self.is_object)) if self.instance is None else np.asarray(self.instance)
        self.instance = np.where(self.is_object, ids, 0)

    def to_json(self, names: ClassInfo) -> list[dict]:
        return [{"channel": k, "instance_id": int(self.instance[k]), "object": bool(self.is_object[k]),
                 "class": int(self.classes[k]), "name": names.name(int(self.classes[k])) if self.is_object[k] else "",
                 "votes": int(self.votes[k]) if self.votes.size else 0} for k in range(len(self.is_object))]


def semantic_channel_table(classes: ClassInfo) -> ChannelTable:
    """Semantic mode: channel c is class c; thing classes are one object each."""
    ids = np.arange(classes.num_classes)
    return ChannelTable(is_object=np.isin(ids, classes.thing_ids), classes=ids)


def render_view(model: SceneModel, c2w: np.ndarray, K: np.ndarray, hw: tuple[int, int], chunk: int,
                table: ChannelTable, method: "Method", stuff_ids: tuple[int, ...], stats: dict | None = None
                ) -> dict[str, np.ndarray]:
    """Render one view: rgb ``[H,W,3]``, depth (z, normalised units) ``[H,W]``, normal (camera frame)
    ``[H,W,3]``, instance and semantic ids ``[H,W]`` int32. The ``method`` says which slot each pixel
    shows (:meth:`~sdfseg.methods.Method.owner`) and how slots become ids (``view_mode``; ``table``
    says what each slot is). ``stats``: see :func:`render_rays_chunked`."""
    dev = next(model.parameters()).device
    h, w = hw
    o, d, scale = view_rays(c2w, K, hw, dev)
    surface = method.cfg.render.labels == "surface"
    channels = "opacity" in method.render_keys  # slots are the SDF channels
    keys = tuple(dict.fromkeys(("rgb", "depth") + method.render_keys
                               + (("surface_owner",) if surface and channels else ())
                               + ((("semantic", "surface_semantic") if surface else ("semantic",))
                                  if model.semantic is not None else ())))
    out = render_rays_chunked(model, o, d, chunk, keys, need_normals=False, stats=stats)
    z = (out["depth"] / scale).cpu().numpy().reshape(h, w)
    n_world = surface_normals(model, o + out["depth"][:, None] * d, chunk).cpu().numpy()
    n_cam = (n_world @ c2w[:3, :3]).reshape(h, w, 3)
    owner = method.owner(out).cpu().numpy()
    if method.view_mode == "semantic":
        inst, sem = table.instance[owner], owner.copy()
    else:
        logits = out["surface_semantic" if surface else "semantic"].cpu().numpy() if "semantic" in out else None
        inst, sem = pixel_labels(owner, logits, table, stuff_ids, method.cfg.render.semantic_veto)
    return {"rgb": out["rgb"].cpu().numpy().reshape(h, w, 3), "depth": z, "normal": n_cam,
            "instance": inst.reshape(h, w).astype(np.int32), "semantic": sem.reshape(h, w).astype(np.int32)}


def pixel_labels(owner: np.ndarray, logits: np.ndarray | None, table: ChannelTable, stuff_ids: tuple[int, ...],
                 veto: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Instance and semantic ids ``[R]`` of rendered rays in instance mode: ``owner [R]`` the slot each ray
    shows, ``logits [R, C]`` the semantic head's (None: no head). A ray owned by an object slot shows that
    object and its class; any other ray shows background (instance 0) and the head's best stuff class (0
    without a head). ``veto``: a ray whose head logits put some stuff class above its object's class shows
    background too (the head, trained on every label of every view, says the pixel is floor or wall where
    the channel owning it also holds the floor around an object)."""
    obj = table.is_object[owner]
    if logits is not None and stuff_ids:
        stuff_logits = logits[:, list(stuff_ids)]
        stuff = np.asarray(stuff_ids)[stuff_logits.argmax(axis=1)]
        if veto:
            mine = logits[np.arange(owner.size), table.classes[owner]]
            obj = obj & ~(stuff_logits.max(axis=1) > mine)
    else:
        stuff = np.zeros_like(owner)
    return np.where(obj, table.instance[owner], 0), np.where(obj, table.classes[owner], stuff)


def write_test_views(model: SceneModel, scene: Scene, out_dir: Path, table: ChannelTable, method: "Method",
                     chunk: int, frames: np.ndarray | None = None, progress: bool = True,
                     stats: dict | None = None) -> None:
    """Render the test frames into ``out_dir/{rgb,depth,normal,instance,semantic}/<frame>.png``.

    Depth is written as uint16 millimetres in world units; normals as 8-bit (n + 1) / 2.
    """
    frames = scene.split["test"] if frames is None else frames
    for i in progress_iter(frames, "render test views", progress, unit="view"):
        name = scene.frame_names[int(i)]
        r = render_view(model, scene.c2w[i], scene.intrinsics[i], scene.hw, chunk, table, method,
                        scene.classes.stuff_ids, stats=stats)
        save_image_atomic(out_dir / "rgb" / f"{name}.png", r["rgb"])
        mm = np.clip(r["depth"] * scene.normalization.scale * 1000.0, 0, 65535).astype(np.uint16)
        save_image_atomic(out_dir / "depth" / f"{name}.png", mm)
        save_image_atomic(out_dir / "normal" / f"{name}.png", (r["normal"] + 1.0) * 0.5)
        save_label_png(out_dir / "instance" / f"{name}.png", r["instance"])
        save_label_png(out_dir / "semantic" / f"{name}.png", r["semantic"])


def save_channel_table(path: Path, table: ChannelTable, classes: ClassInfo) -> None:
    write_json_atomic(path, {"channels": table.to_json(classes)})
