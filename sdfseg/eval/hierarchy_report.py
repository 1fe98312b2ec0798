"""Hierarchy evaluation of feature-head runs against a synthetic scene's GT hierarchy.

Protocol (test split of the scene; all methods get the same queries and view pairs):

* **Queries**: in every test frame, one click per GT segment of the finest level (parts)
  of at least ``min_area`` pixels, at a random pixel at least 2 px inside it (seeded).
  Its GT masks are the part / object / group segments containing it (id 0 = stuff, left
  out). **Hierarchical mIoU** per level = mean IoU at the best score threshold.
* **NC** per level: mean over test frames of the Normalized Covering of that level's
  GT segments by the method's masks: the raw masks themselves, or for a feature map the
  segments of its 4-neighbour feature graph cut at 50 distances ``0.02 .. 1.0``.
* **VC** per level: each test frame is paired with the frame whose viewing direction is
  closest to 10 degrees away (within 5); masks of a click and of its warped click (GT
  depth) are compared on co-visible pixels; VC = mean over levels.

The raw 2D masks (``masks_<source>/`` of the test frames, never used for training) are the
baseline row: their score map for a click ranks the masks containing it by size. Feature
maps of dataset frames are rendered like the training rays (depth-guided samples when the
run trains with ``sampler.use_depth``, see :func:`sdfseg.methods.hierarchy.run.frame_depth`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np
import torch
from scipy import ndimage

from ..data.masks import MaskSet
from ..data.scene import Scene
from ..errors import SdfsegError
from ..methods.hierarchy.query import CandidateFn, feature_candidates, score_map, segment_image_hierarchy
from ..progress import progress_iter
from .hierarchy import (
    View, gt_level_masks, hierarchical_miou, normalized_covering, raw_mask_candidates, raw_mask_score_map,
    view_consistency, view_pairs,
)

LEVELS = ("part", "object", "group")
NC_DISTANCES = np.linspace(0.02, 1.0, 50)
"""Feature-distance cuts (1 - cos) of the feature maps' segmentation hierarchy for NC."""


def scene_levels(scene: Scene) -> list[str]:
    levels = [lv for lv in LEVELS if lv in scene.gt_hierarchy]
    if not levels:
        raise SdfsegError(f"{scene.path}: no GT hierarchy maps (gt_part/, gt_group/ + rs_instance/); hierarchy "
                          f"evaluation needs a synthetic scene (tools/make_synthetic.py)")
    return levels


def sample_queries(finest: np.ndarray, rng: np.random.Generator, min_area: int = 20, inset: int = 2
                   ) -> list[tuple[int, int]]:
    """One click (y, x) per segment (id != 0, >= ``min_area`` px) of a label map ``[H, W]``, ``inset`` px inside."""
    out = []
    for sid in np.unique(finest):
        seg = finest == sid
        if sid == 0 or seg.sum() < min_area:
            continue
        inner = ndimage.binary_erosion(seg, iterations=inset, border_value=1)
        pix = np.argwhere(inner if inner.any() else seg)
        y, x = pix[rng.integers(0, len(pix))]
        out.append((int(y), int(x)))
    return out


def partner_frames(scene: Scene, frames: Sequence[int], angle: float = 10.0, tol: float = 5.0) -> dict[int, int]:
    """For each frame in ``frames``, the frame (any split) about ``angle`` degrees away, where one exists."""
    pairs = dict(view_pairs(scene.c2w, angle, tol))
    return {int(i): int(pairs[int(i)]) for i in frames if int(i) in pairs}


class Method:
    """What the metrics need of one method on one frame: score maps, candidate masks, NC masks."""

    def score(self, frame: int, click: tuple[int, int]) -> np.ndarray:  # float [H, W]
        raise NotImplementedError

    def candidates(self, frame: int) -> CandidateFn:
        raise NotImplementedError

    def nc_masks(self, frame: int):  # iterable of bool or label maps [H, W]
        raise NotImplementedError


class RawMasks(Method):
    """The raw 2D masks of each frame (a :class:`MaskSet` per frame)."""

    def __init__(self, masks: dict[int, MaskSet]):
        self.masks = masks

    def score(self, frame, click):
        return raw_mask_score_map(self.masks[frame], click)

    def candidates(self, frame):
        return raw_mask_candidates(self.masks[frame])

    def nc_masks(self, frame):
        return self.masks[frame]


class FeatureMaps(Method):
    """Rendered feature maps ``[H, W, D]`` per frame."""

    def __init__(self, features: dict[int, np.ndarray]):
        self.features = features

    def score(self, frame, click):
        return score_map(self.features[frame], click)

    def candidates(self, frame):
        return feature_candidates(self.features[frame])

    def nc_masks(self, frame):
        return list(segment_image_hierarchy(self.features[frame], NC_DISTANCES))


def gt_hierarchy_field(synthetic, normalization) -> Callable[[torch.Tensor], torch.Tensor]:
    """The exact part / object / group field of a synthetic scene as a feature field.

    At a normalised point: the one-hot part, object and group of the closest GT surface,
    each block scaled by ``1 / sqrt(3)``, so the click score ``(cos + 1) / 2`` is 1 for the
    same part, 5/6 for the same object, 2/3 for the same group and 1/2 otherwise: a perfect
    hierarchy for the thresholds to find. Room shell points get a unit vector of their own
    (score 1/2 against every part), so that a pixel rendered half on an object and half on
    the wall behind it scores as the mixture it is.
    """
    tables = synthetic.part_tables()
    ids = np.array([p.id for p in synthetic.parts], dtype=np.int64)
    eye = [np.eye(int(t.max()) + 1, dtype=np.float32)[:, 1:] for t in
           (np.arange(tables["object"].size), tables["object"], tables["group"])]

    def field(x: torch.Tensor) -> torch.Tensor:
        world = normalization.to_world(x.detach().cpu().numpy())
        col = np.argmin(synthetic.part_sdf(world), axis=1)
        part = np.where(col > 0, ids[np.maximum(col - 1, 0)], 0)
        blocks = [eye[0][part], eye[1][tables["object"][part]], eye[2][tables["group"][part]]]
        room = (part == 0).astype(np.float32)[:, None]
        feat = np.concatenate([room] + [b / np.sqrt(3.0) for b in blocks], axis=1)
        return torch.as_tensor(feat, dtype=torch.float32, device=x.device)

    return field


def ceiling_row(run, frames: Sequence[int], name: str) -> tuple[str, "FeatureMaps"]:
    """The GT hierarchy field (:func:`gt_hierarchy_field`) rendered with ``run``'s geometry.

    What a perfect feature head on that run's backbone could reach; needs the synthetic
    scene description ``synthetic.json`` next to the scene.
    """
    from ..data.synthetic import load_synthetic
    from ..methods.hierarchy.run import render_frame_field

    path = Path(run.scene.path) / "synthetic.json"
    if not path.exists():
        raise SdfsegError(f"{path}: not found (the geometry ceiling row needs a synthetic scene)")
    field = gt_hierarchy_field(load_synthetic(path), run.scene.normalization)
    maps = {int(f): render_frame_field(run, int(f), field) for f in frames}
    return f"ceiling: GT hierarchy, {name} geometry", FeatureMaps(maps)


def _view(scene: Scene, i: int) -> View:
    if scene.depth is None:
        raise SdfsegError(f"{scene.path}: view consistency needs depth maps (depth/)")
    return View(scene.depth_float(i), scene.intrinsics[i], scene.c2w[i])


def evaluate_method(method: Method, scene: Scene, queries: dict[int, list[tuple[int, int]]],
                    partners: dict[int, int], levels: Sequence[str], vc_samples: int = 10, seed: int = 0,
                    desc: str = "") -> dict:
    """Hierarchical mIoU, NC and VC per level of one method (see the module docstring)."""
    gt = scene.gt_hierarchy
    scores, gts = [], []
    nc: dict[str, list[float]] = {lv: [] for lv in levels}
    vc: dict[str, list[float]] = {lv: [] for lv in levels}
    for f in progress_iter(list(queries), f"score {desc}", unit="frame"):
        maps = {lv: gt[lv][f] for lv in levels}
        for c in queries[f]:
            scores.append(method.score(f, c))
            gts.append(gt_level_masks(maps, c))
        predictions = method.nc_masks(f)
        for lv in levels:
            nc[lv].append(normalized_covering(maps[lv], predictions))
        if f in partners:
            g = partners[f]
            for lv in levels:
                rng = np.random.default_rng([seed, f, levels.index(lv)])
                vc[lv].append(view_consistency(method.candidates(f), method.candidates(g), gt[lv][f], gt[lv][g],
                                               _view(scene, f), _view(scene, g), n_samples=vc_samples, rng=rng))
    miou = hierarchical_miou(scores, gts)
    nc_mean = {lv: _nanmean(v) for lv, v in nc.items()}
    vc_mean = {lv: _nanmean(v) for lv, v in vc.items()}
    vc_mean["mean"] = _nanmean(list(vc_mean.values()))
    return {"miou": miou, "nc": nc_mean, "vc": vc_mean}


def _nanmean(values: Sequence[float]) -> Optional[float]:
    arr = np.asarray([v for v in values if v is not None], dtype=np.float64)
    return float(np.nanmean(arr)) if arr.size and not np.isnan(arr).all() else None


def raw_masks_of(scene: Scene, source: str, frames: Sequence[int]) -> dict[int, MaskSet]:
    """Mask sets of ``frames`` from ``masks_<source>/`` at the scene's resolution (frames without masks: empty)."""
    from ..methods.hierarchy.supervision import frame_masks

    h, w = scene.hw
    out = {}
    for f in frames:
        m = frame_masks(scene, source, int(f))
        out[int(f)] = m if m is not None else MaskSet.from_masks([], h, w)
    return out


def evaluate_runs(runs: Sequence, names: Sequence[str], mask_source: Optional[str] = None, vc_samples: int = 10,
                  seed: int = 0, progress: bool = True, ceiling: bool = False) -> dict:
    """Evaluate feature-head runs (:class:`~sdfseg.methods.hierarchy.run.FeatureRun`, same scene) + the raw masks row.

    ``ceiling`` adds, after the runs, the row :func:`ceiling_row` of the first run.
    """
    from ..methods.hierarchy.run import render_frame

    scene = runs[0].scene
    for r in runs[1:]:
        if r.scene.path != scene.path or r.scene.hw != scene.hw:
            raise SdfsegError(f"{r.run_dir}: trained on {r.scene.path} {r.scene.hw}, not {scene.path} {scene.hw}")
    levels = scene_levels(scene)
    source = mask_source or runs[0].cfg.features.mask_source
    test = [int(i) for i in scene.split["test"]]
    rng = np.random.default_rng(seed)
    queries = {f: sample_queries(scene.gt_hierarchy[levels[0]][f], rng) for f in test}
    partners = partner_frames(scene, test)
    needed = sorted(set(test) | set(partners.values()))
    rows = [{"name": f"raw 2D masks ({source})", "run": None,
             **evaluate_method(RawMasks(raw_masks_of(scene, source, needed)), scene, queries, partners, levels,
                               vc_samples, seed, "raw masks")}]
    for run, name in zip(runs, names):
        feats = {}
        for f in progress_iter(needed, f"render {name}", progress, unit="view"):
            feats[f] = render_frame(run, f)["features"]
        rows.append({"name": name, "run": str(run.run_dir),
                     **evaluate_method(FeatureMaps(feats), scene, queries, partners, levels, vc_samples, seed, name)})
    if ceiling:
        name, method = ceiling_row(runs[0], needed, names[0])
        rows.append({"name": name, "run": str(runs[0].run_dir),
                     **evaluate_method(method, scene, queries, partners, levels, vc_samples, seed, name)})
    return {"scene": str(scene.path), "mask_source": source, "levels": levels,
            "test_frames": [scene.frame_names[f] for f in test], "queries": sum(len(q) for q in queries.values()),
            "vc_pairs": [[scene.frame_names[a], scene.frame_names[b]] for a, b in partners.items()], "rows": rows}


def format_hierarchy_table(result: dict) -> str:
    """Terminal table (percent) of :func:`evaluate_runs`' result."""
    levels = result["levels"]
    short = {"part": "part", "object": "obj", "group": "grp"}
    head = (["method"] + [f"mIoU {short[lv]}" for lv in levels] + ["mIoU mean"] + [f"NC {short[lv]}" for lv in levels]
            + [f"VC {short[lv]}" for lv in levels] + ["VC"])
    lines = [head]
    fmt = lambda v: "-" if v is None or (isinstance(v, float) and np.isnan(v)) else f"{100 * v:.1f}"
    for row in result["rows"]:
        vals = ([row["miou"].get(lv) for lv in levels] + [row["miou"].get("mean")] + [row["nc"][lv] for lv in levels]
                + [row["vc"][lv] for lv in levels] + [row["vc"]["mean"]])
        lines.append([row["name"]] + [fmt(v) for v in vals])
    width = [max(len(r[i]) for r in lines) for i in range(len(head))]
    out = ["  ".join(c.ljust(width[i]) if i == 0 else c.rjust(width[i]) for i, c in enumerate(r)) for r in lines]
    out.insert(1, "-" * len(out[0]))
    info = f"{result['queries']} queries on {len(result['test_frames'])} test frames, {len(result['vc_pairs'])} VC pairs"
    return "\n".join(out + [info])
