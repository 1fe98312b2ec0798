"""Peak memory of loading a ScanNet-size scene: ``tools/benchmark.py --scene-memory FRAMES H W``.

:func:`write_memory_scene` writes a Panoptic-Lifting-layout scene of ``FRAMES`` frames of
``H x W`` with every per-pixel file that layout reads: ``color/`` PNG, ``depth/`` uint16
millimetre PNG, ``normal/`` float16 ``[H, W, 3]`` npy, ``m2f_semantics/``, ``m2f_instance/``,
``m2f_probabilities/`` (``confidence``), ``rs_semantics/``, ``rs_instance/``, poses, intrinsics,
``splits.json`` and ``segmentation_data.pkl``. Content is synthetic but shaped like a room scan
(smooth colours with texture and noise, depth of 0.5-5 m with holes, blocky label segments, a
few dozen instances, confidences with test-time-augmentation zeros); ``distinct`` frames are
encoded and the others are hard links to them (copies where links are refused), so 1000 frames
of 480 x 640 are written in seconds. Poses differ per frame.

:func:`scene_memory` loads such a scene in a child process the way training does for a config (by
default the ScanNet recipe, ``confs/scannet.yaml``, at the scene's own size):
:func:`~sdfseg.training.trainer.load_training_scene` (the layout's reader with training's read options: normal
maps only for the normal losses, GT maps of the test frames; normalisation), the training labels and
the :class:`~sdfseg.data.rays.RaySampler` on the CPU, then one batch and 20 more timed
(``batch_seconds``: the sampler's share of a training step). It reports the child's peak resident
memory (``getrusage(RUSAGE_CHILDREN).ru_maxrss``), the phases' times, the bytes of the scene's
arrays and what those arrays take in float32 / int32 (the storage before scenes were compact). The
child uses only the public loading API, so ``code`` may name another checkout of the package (e.g. a
``git worktree`` of an older commit) to measure it on the same files with the same config.
"""

from __future__ import annotations

import json
import os
import pickle
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional

import numpy as np
from PIL import Image

from ..errors import SdfsegError
from ..io import save_label_png

NUM_CLASSES = 22
THINGS = (4, 5, 6, 14, 15, 16, 17, 18, 20)
MARKER = "scene_memory.json"
"""File recording the spec of a generated scene, so a folder can be reused (``scene_dir``)."""

SCANNET_CONFIG = Path(__file__).resolve().parents[2] / "confs" / "scannet.yaml"
"""The training config the benchmark loads the scene for by default: the ScanNet recipe (no normal losses)."""

FLOAT32_BYTES_PER_PIXEL = {"rgb": 12, "depth": 4, "normals": 12, "label": 4, "confidence": 4}
"""Bytes per pixel of each kind of array in the float32 / int32 storage of scenes before they were compact."""


def _blocks(rng: np.random.Generator, h: int, w: int, cell: int, values: np.ndarray) -> np.ndarray:
    """A map of ``cell``-sized blocks (nearest upsampled) with values drawn from ``values``."""
    gh, gw = -(-h // cell), -(-w // cell)
    small = rng.choice(values, size=(gh, gw))
    return np.repeat(np.repeat(small, cell, 0), cell, 1)[:h, :w]


def _template(rng: np.random.Generator, h: int, w: int) -> dict[str, np.ndarray]:
    """One frame's maps: colour, depth (mm), normals, m2f and GT labels, confidence."""
    cell = max(4, min(h, w) // 12)
    gt_sem = _blocks(rng, h, w, cell, np.arange(1, NUM_CLASSES))
    gt_sem[:cell] = 1  # a wall along the top, a floor along the bottom
    gt_sem[-cell:] = 2
    thing = np.isin(gt_sem, THINGS)
    gt_inst = np.where(thing, _blocks(rng, h, w, cell, np.arange(1, 61)), 0)
    noisy = rng.random((h, w)) < 0.1  # the noisy segmenter: shifted boundaries, relabelled pixels, own ids
    m2f_sem = np.where(noisy, _blocks(rng, h, w, cell // 2, np.arange(0, NUM_CLASSES)), np.roll(gt_sem, 3, 1))
    m2f_inst = np.where(np.isin(m2f_sem, THINGS), _blocks(rng, h, w, cell, np.arange(1, 31)), 0)
    v, u = np.mgrid[0:h, 0:w].astype(np.float32)
    base = 0.5 + 0.3 * np.stack([u / w, v / h, 1 - u / w], -1)
    albedo = rng.random((NUM_CLASSES, 3)).astype(np.float32)
    rgb = 0.5 * base + 0.4 * albedo[gt_sem] + rng.normal(0, 0.03, (h, w, 3)).astype(np.float32)
    depth = 500 + 4500 * (0.5 + 0.5 * np.sin(u / w * 3 + rng.random() * 6)) * (0.6 + 0.4 * v / h)
    depth = depth + rng.normal(0, 5, (h, w))
    depth[rng.random((h, w)) < 0.02] = 0  # holes
    n = np.stack([np.sin(u / w * 3), np.cos(v / h * 2), -np.ones_like(u)], -1)
    n /= np.linalg.norm(n, axis=-1, keepdims=True)
    conf = np.clip(rng.random((h, w)) * 0.5 + 0.5, 0, 1)
    conf[rng.random((h, w)) < 0.05] = 0  # test-time augmentations disagree: read as 0.1
    return {"rgb": (np.clip(rgb, 0, 1) * 255 + 0.5).astype(np.uint8), "depth": depth.clip(0, 65535).astype(np.uint16),
            "normal": n.astype(np.float16), "rs_semantics": gt_sem, "rs_instance": gt_inst,
            "m2f_semantics": m2f_sem, "m2f_instance": m2f_inst, "confidence": conf.astype(np.float16)}


_FILES = {"color": ".png", "depth": ".png", "normal": ".npy", "rs_semantics": ".png", "rs_instance": ".png",
          "m2f_semantics": ".png", "m2f_instance": ".png", "m2f_probabilities": ".npz"}


def _write_template(root: Path, name: str, maps: dict[str, np.ndarray]) -> None:
    Image.fromarray(maps["rgb"]).save(root / "color" / f"{name}.png", compress_level=1)
    Image.fromarray(maps["depth"]).save(root / "depth" / f"{name}.png", compress_level=1)
    np.save(root / "normal" / f"{name}.npy", maps["normal"], allow_pickle=False)
    for key in ("rs_semantics", "rs_instance", "m2f_semantics", "m2f_instance"):
        save_label_png(root / key / f"{name}.png", maps[key])
    np.savez(root / "m2f_probabilities" / f"{name}.npz", confidence=maps["confidence"])


def _link(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


def write_memory_scene(root: str | os.PathLike, frames: int, height: int, width: int, distinct: int = 8,
                       seed: int = 0) -> Path:
    """Write the benchmark scene (see the module docstring) into the empty or new folder ``root``."""
    root = Path(root)
    if frames < 1 or height < 8 or width < 8:
        raise SdfsegError(f"--scene-memory: expected FRAMES >= 1 and H, W >= 8, got {frames} {height} {width}")
    if root.exists() and any(root.iterdir()):
        raise SdfsegError(f"{root}: folder is not empty")
    for d in list(_FILES) + ["pose", "intrinsic"]:
        (root / d).mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    names = [f"{i:04d}" for i in range(frames)]
    for i, name in enumerate(names):
        if i < distinct:
            _write_template(root, name, _template(rng, height, width))
        else:
            src = names[i % distinct]
            for d, ext in _FILES.items():
                _link(root / d / f"{src}{ext}", root / d / f"{name}{ext}")
        angle = 2 * np.pi * i / frames
        c2w = np.eye(4)
        c, s = np.cos(angle), np.sin(angle)
        c2w[:3, :3] = [[c, 0, s], [0, 1, 0], [-s, 0, c]]  # turning about the vertical (OpenCV y) axis
        c2w[:3, 3] = [0.5 * np.sin(angle), -1.4, 0.5 * np.cos(angle)]
        np.savetxt(root / "pose" / f"{name}.txt", c2w, fmt="%.9f")
    K = np.eye(4)
    f = 0.5 * width / np.tan(np.deg2rad(60) / 2)
    K[:3, :3] = [[f, 0, width / 2 - 0.5], [0, f, height / 2 - 0.5], [0, 0, 1]]  # pixel-index convention
    np.savetxt(root / "intrinsic" / "intrinsic_color.txt", K, fmt="%.9f")
    test = [n for i, n in enumerate(names) if i % 8 == 0]
    (root / "splits.json").write_text(json.dumps({"train": [n for n in names if n not in set(test)], "test": test}))
    seg = {"num_semantic_classes": NUM_CLASSES, "fg_classes": list(THINGS),
           "bg_classes": [c for c in range(NUM_CLASSES) if c not in THINGS]}
    (root / "segmentation_data.pkl").write_bytes(pickle.dumps(seg, protocol=4))
    (root / MARKER).write_text(json.dumps({"frames": frames, "height": height, "width": width,
                                           "distinct": distinct, "seed": seed}))
    return root


_CHILD = r'''
import json, resource, sys, time
t0 = time.perf_counter()
import numpy as np
import torch
from sdfseg.config import load_config
from sdfseg.data.rays import RaySampler
from sdfseg.training.labels import training_labels
from sdfseg.training.trainer import load_training_scene, num_channels_for
torch.set_num_threads(1)

def rss():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

path, out, config = sys.argv[1], sys.argv[2], sys.argv[3]
cfg = load_config(config or None)
cfg.data.path, cfg.data.layout, cfg.data.image_size, cfg.data.max_frames = path, "panoptic_lifting", None, None
import sdfseg
r = {"maxrss_imports": rss(), "import_seconds": time.perf_counter() - t0, "sdfseg_file": sdfseg.__file__,
     "config": config or "defaults", "keeps_normals": cfg.loss.normal_l1 > 0 or cfg.loss.normal_cos > 0}
t = time.perf_counter()
scene = load_training_scene(cfg)  # the reader with training's read options, normalisation
r["scene_seconds"] = time.perf_counter() - t
r["maxrss_scene"] = rss()
t = time.perf_counter()
labels = training_labels(scene, cfg, num_channels_for(cfg, scene))
r["labels_seconds"] = time.perf_counter() - t
r["maxrss_labels"] = rss()
t = time.perf_counter()
sampler = RaySampler(scene, labels.labels, labels.semantic, labels.confidence, torch.device("cpu"),
                     cfg.train.keyframe_ratio, cfg.train.replace_prob, cfg.train.seed)
r["sampler_seconds"] = time.perf_counter() - t
from sdfseg.methods import create_method
use_extra = create_method(cfg, scene.classes).extra_views()
args = (cfg.train.rays - cfg.train.label_rays, cfg.train.label_rays, cfg.train.extra_views if use_extra else 0,
        cfg.train.extra_rays)
batch = sampler.sample(*args)
t = time.perf_counter()
steps = 20
for _ in range(steps):
    sampler.sample(*args)
r["batch_seconds"] = (time.perf_counter() - t) / steps
r["maxrss_sampler"] = rss()
arrays, seen = {}, set()
def add(name, a):
    if a is not None and id(a) not in seen:
        seen.add(id(a))
        held = getattr(a, "frames", None)
        arrays[name] = {"dtype": str(a.dtype), "shape": list(a.shape), "bytes": int(a.nbytes)}
        if held is not None:
            arrays[name]["held_frames"] = int(len(held))
add("rgb", scene.rgb); add("depth", scene.depth); add("normals", scene.normals)
for n, src in list(scene.labels.items()) + [("gt", scene.gt)]:
    for k in ("instance", "semantic", "confidence"):
        add((n if n == "gt" else "labels." + n) + "." + k, getattr(src, k, None) if src is not None else None)
for lv, a in scene.gt_hierarchy.items():
    add("gt_hierarchy." + lv, a)
r["arrays"] = arrays
def own(a):  # bytes held by the training labels themselves (LabelMaps: the tables; an array: all of it)
    return int(a.held_bytes) if hasattr(a, "held_bytes") else int(a.nbytes)
r["training_labels"] = {k: {"dtype": str(a.dtype), "type": type(a).__name__, "bytes": own(a)}
                        for k, a in (("labels", labels.labels), ("semantic", labels.semantic),
                                     ("confidence", labels.confidence)) if a is not None}
if hasattr(sampler, "tensors"):
    r["sampler_tensors"] = {k: str(v.dtype) for k, v in sampler.tensors().items()}
else:  # an older checkout (--code): its attributes
    r["sampler_tensors"] = {k: str(getattr(sampler, k).dtype) for k in ("rgb", "depth", "normals", "labels",
                            "semantic", "confidence") if getattr(sampler, k, None) is not None}
r["batch_rays"] = int(batch.rgb.shape[0])
r["num_frames"] = scene.num_frames
r["hw"] = list(scene.hw)
with open(out, "w") as fh:
    json.dump(r, fh)
'''


def _float32_bytes(arrays: dict[str, dict]) -> int:
    """Bytes the recorded arrays would take as float32 colours/depth/normals/confidences and int32 label maps."""
    total = 0
    for name, a in arrays.items():
        kind = name if name in ("rgb", "depth", "normals") else ("confidence" if name.endswith("confidence")
                                                                  else "label")
        shape = [a.get("held_frames", a["shape"][0])] + list(a["shape"][1:])  # frames actually held
        px = int(np.prod(shape[:3])) if kind in ("rgb", "normals") else int(np.prod(shape))
        total += px * FLOAT32_BYTES_PER_PIXEL[kind]
    return total


def scene_memory(frames: int, height: int, width: int, scene_dir: Optional[str | os.PathLike] = None,
                 code: Optional[str | os.PathLike] = None, distinct: int = 8,
                 config: Optional[str | os.PathLike] = SCANNET_CONFIG) -> dict:
    """Generate (or reuse, in ``scene_dir``) the benchmark scene and measure loading it in a child process.

    ``code``: root of the sdfseg checkout the child imports (default: this one). ``config``: the training
    config whose settings decide what is loaded (default :data:`SCANNET_CONFIG`, this checkout's ScanNet
    recipe; None: the built-in defaults, which train with the normal losses and so keep the normal maps);
    the scene is read at its own ``H x W`` whatever the config's ``data.image_size``. Returns the child's
    figures (see the module docstring) plus ``peak_rss_bytes`` (``RUSAGE_CHILDREN``),
    ``scene_bytes``, ``float32_scene_bytes``, ``generate_seconds`` and ``load_seconds``.
    """
    config_arg = ""
    if config is not None:
        config_path = Path(config).resolve()
        if not config_path.is_file():
            raise SdfsegError(f"{config_path}: config not found")
        config_arg = str(config_path)
    tmp = None
    if scene_dir is None:
        tmp = tempfile.mkdtemp(prefix="sdfseg-scene-memory-")
        root = Path(tmp) / "scene"
    else:
        root = Path(scene_dir)
    try:
        spec = {"frames": frames, "height": height, "width": width, "distinct": distinct, "seed": 0}
        t = time.perf_counter()
        reused = (root / MARKER).is_file() and json.loads((root / MARKER).read_text()) == spec
        if not reused:
            write_memory_scene(root, frames, height, width, distinct)
        generate_seconds = time.perf_counter() - t
        code_root = Path(code).resolve() if code is not None else Path(__file__).resolve().parents[2]
        if not (code_root / "sdfseg" / "__init__.py").is_file():
            raise SdfsegError(f"{code_root}: not an sdfseg checkout (no sdfseg/__init__.py)")
        result_file = root.parent / f".{root.name}-memory-{os.getpid()}.json"
        env = dict(os.environ, PYTHONPATH=str(code_root) + os.pathsep + os.environ.get("PYTHONPATH", ""),
                   OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
        earlier_children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        t = time.perf_counter()
        proc = subprocess.run([sys.executable, "-c", _CHILD, str(root), str(result_file), config_arg], env=env,
                              cwd=str(code_root), capture_output=True, text=True)
        load_seconds = time.perf_counter() - t
        children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
        if proc.returncode != 0:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
            raise SdfsegError(f"loading the benchmark scene failed (exit {proc.returncode}): {' | '.join(tail)}")
        r = json.loads(result_file.read_text())
        result_file.unlink()
        # the child's own final ru_maxrss is its peak; RUSAGE_CHILDREN agrees unless an earlier child of this
        # process peaked higher
        peak = max(children, r["maxrss_sampler"]) if earlier_children == 0 else r["maxrss_sampler"]
        scene_bytes = sum(a["bytes"] for a in r["arrays"].values())
        r.update(frames=frames, height=height, width=width, scene_dir=None if tmp else str(root), reused=reused,
                 code=str(code_root), peak_rss_bytes=int(peak), scene_bytes=int(scene_bytes),
                 float32_scene_bytes=_float32_bytes(r["arrays"]), generate_seconds=generate_seconds,
                 load_seconds=load_seconds)
        return r
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
