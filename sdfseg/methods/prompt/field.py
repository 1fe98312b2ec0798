"""SANeRF-HQ's prompted object field on a trained run (paper 003, REFERENCE 4).

A user prompt (2D clicks lifted to 3D with the run's rendered depth, or 3D points) is projected into every
training view and kept where the run's rendered depth agrees (the point is visible there). A prompted 2D
segmenter answers the prompt in each of those views with a mask. An object field (one view-independent
logit per point, from the run's geometry feature and its own hash grid) is volume-rendered with the run's
frozen weights and trained on the masks with

* binary cross-entropy to the views' masks, on rays drawn half uniformly and half from per-view error
  maps (the pixels the field still gets wrong, updated as they are rendered);
* the ray-pair RGB loss: inside small patches, rays of similar rendered colour are pushed to similar
  object probabilities (``exp(-|c_i - c_j|^2 / 2 sigma^2) |p_i - p_j|``), which cleans ragged mask edges.

Outputs: the object's mask in every test view, its own watertight mesh (the scene solid cut to the
vertices whose surface the field calls the object, :func:`sdfseg.export.mesh.label_solid`), and on scenes
with GT the SANeRF-HQ metrics (IoU and pixel accuracy over the test views) of the field, of the raw
per-view masks and of the run's own instance of the object.

Prompted segmenters (:func:`make_prompt_segmenter`): ``sam`` (segment-anything with a local checkpoint),
``sim`` (synthetic scenes: a SAM-like answer simulated from the GT instance maps: the clicked object,
ragged edges, now and then merged with an object it touches or missing) and ``classical`` (no weights:
the segment of the classical segmenter's hierarchy that holds the click).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

from ...core.fields.feature_head import FeatureHead
from ...core.model import BOUND_RADIUS
from ...core.render.views import render_rays_chunked
from ...errors import SdfsegError

OBJECT = "object"
"""Name of the object field among the model's heads while it is trained and rendered."""


@dataclass
class PromptConfig:
    iterations: int = 400
    rays: int = 1024
    error_share: float = 0.5
    """Share of each batch's rays drawn from the view's error map (the rest uniform)."""
    patches: int = 8
    patch_size: int = 4
    pair_weight: float = 0.5
    pair_sigma: float = 0.1
    lr: float = 5.0e-3
    grid_lr: float = 1.0e-2
    depth_tolerance: float = 0.03
    """A prompt point is visible in a view when the rendered depth there is within this (normalised
    units, or 3% of the distance, whichever is larger) of the point's own distance."""
    mesh_resolution: int = 128
    seed: int = 0


@dataclass
class Prompt:
    """Positive and negative prompt points in normalised scene coordinates."""

    positive: np.ndarray  # [P, 3]
    negative: np.ndarray = field(default_factory=lambda: np.zeros((0, 3)))
    clicks: list = field(default_factory=list)
    """The 2D clicks the points were lifted from: ``(frame name, u, v, positive)``."""


# ---- the prompt in every view ------------------------------------------------------------------------
def _ray(scene, i: int, u: np.ndarray, v: np.ndarray, device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Rays through pixel centres ``(u, v)`` (column, row) of frame ``i``: origins, dirs ``[N, 3]`` and the
    ray scale ``[N]`` (z-depth -> distance)."""
    from ...data.rays import view_rays

    return view_rays(scene.c2w[i], scene.intrinsics[i], scene.hw, device, u, v)


def surface_points(run, i: int, u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The run's rendered surface points ``[N, 3]`` (normalised) through pixels ``(u, v)`` of frame ``i``,
    and whether each ray hits a surface ``[N]``, in one render."""
    o, d, _ = _ray(run.scene, i, np.asarray(u, dtype=np.int64), np.asarray(v, dtype=np.int64), run.device)
    out = render_rays_chunked(run.model, o, d, 4096, ("depth", "acc"))
    pts = (o + out["depth"][:, None] * d).cpu().numpy().astype(np.float64)
    return pts, out["acc"].cpu().numpy() >= 0.5


def lift_clicks(run, clicks: list[tuple[int, float, float]]) -> np.ndarray:
    """3D points ``[N, 3]`` (normalised) of clicks ``(frame index, u, v)`` on the run's rendered surface;
    a one-line error for a click outside the image or on no surface."""
    s = run.scene
    h, w = s.hw
    pts = []
    for i, u, v in clicks:
        if not (0 <= u < w and 0 <= v < h):
            raise SdfsegError(f"--click {s.frame_names[i]} {u} {v}: outside the {w}x{h} image")
        p, hit = surface_points(run, i, np.array([int(u)]), np.array([int(v)]))
        if not hit[0]:
            raise SdfsegError(f"--click {s.frame_names[i]} {u} {v}: the ray hits no surface of the run")
        pts.append(p[0])
    return np.asarray(pts, dtype=np.float64).reshape(-1, 3)


def expand_clicks(run, segmenter, clicks: list[tuple[int, float, float]], negatives: list[tuple[int, float, float]],
                  n: int = 16, seed: int = 0) -> np.ndarray:
    """More prompt points from each positive click: the segmenter's answer to the click in its own frame,
    eroded by 2 pixels, gives up to ``n`` pixels (evenly drawn, seeded) that are lifted to 3D like the click.
    A single click is seen in few other views (it is occluded or off-image in most); points spread over
    the object's visible side reach many more. Returns ``[M, 3]`` normalised points (possibly none)."""
    rng = np.random.default_rng(seed)
    out = []
    for i, u, v in clicks:
        neg = [(int(nu), int(nv)) for j, nu, nv in negatives if j == i]
        m = segmenter(i, _rgb_uint8(run.scene, i), [(int(u), int(v))], neg)
        if m is None:
            continue
        core = ndimage.binary_erosion(m, iterations=2)
        vv, uu = np.nonzero(core if core.any() else m)
        pick = rng.choice(len(uu), size=min(n, len(uu)), replace=False)
        pts, hit = surface_points(run, i, uu[pick], vv[pick])
        out += list(pts[hit])  # a pixel on no surface says nothing
    return np.asarray(out, dtype=np.float64).reshape(-1, 3)


def project(scene, i: int, points: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pixels ``(u, v)`` int ``[N]`` each, and the distance along the ray ``[N]`` of normalised points in
    frame ``i`` (u = -1 where a point is behind the camera or outside the image)."""
    c2w = scene.c2w[i].astype(np.float64)
    pc = (np.linalg.inv(c2w) @ np.c_[points, np.ones(len(points))].T)[:3].T
    z = pc[:, 2]
    uvw = (scene.intrinsics[i].astype(np.float64) @ pc.T).T
    with np.errstate(divide="ignore", invalid="ignore"):
        u = np.floor(uvw[:, 0] / uvw[:, 2]).astype(np.int64, copy=False) if len(points) else np.zeros(0, np.int64)
        v = np.floor(uvw[:, 1] / uvw[:, 2]).astype(np.int64, copy=False) if len(points) else np.zeros(0, np.int64)
    h, w = scene.hw
    ok = (z > 1e-6) & (u >= 0) & (u < w) & (v >= 0) & (v < h)
    dist = np.linalg.norm(points - c2w[:3, 3], axis=1)
    return np.where(ok, u, -1), np.where(ok, v, -1), dist


def visible_pixels(run, i: int, points: np.ndarray, tol: float) -> list[tuple[int, int]]:
    """The pixels of frame ``i`` where ``points`` are seen (in the image, and the run's rendered depth
    there agrees with the point's distance)."""
    u, v, dist = project(run.scene, i, points)
    keep = np.flatnonzero(u >= 0)
    if keep.size == 0:
        return []
    o, d, _ = _ray(run.scene, i, u[keep], v[keep], run.device)
    t = render_rays_chunked(run.model, o, d, 4096, ("depth",))["depth"].cpu().numpy()
    # the rendered distance is along the pixel-centre ray: compare it with the point's distance
    seen = np.abs(t - dist[keep]) <= np.maximum(tol, 0.03 * dist[keep])
    return [(int(u[j]), int(v[j])) for j in keep[seen]]


# ---- prompted 2D segmenters ------------------------------------------------------------------------------
class PromptSegmenter(Protocol):
    name: str

    def __call__(self, i: int, rgb: np.ndarray, positive: list[tuple[int, int]],
                 negative: list[tuple[int, int]]) -> Optional[np.ndarray]:
        """Bool mask ``[H, W]`` of the object the clicks point at in frame ``i`` (None: no answer)."""
        ...


class SimulatedPromptSegmenter:
    """SAM-like answers simulated from GT instance maps: the GT object under most of the positive clicks,
    its edge moved by a pixel (eroded or dilated), merged with an object it touches in ``merge_rate`` of
    the views (unless a negative click is there) and missing in ``miss_rate``. Seeded per frame."""

    name = "sim"

    def __init__(self, gt_instance, seed: int = 0, merge_rate: float = 0.15, miss_rate: float = 0.05):
        self.gt, self.seed, self.merge_rate, self.miss_rate = gt_instance, seed, merge_rate, miss_rate

    def __call__(self, i, rgb, positive, negative):
        rng = np.random.default_rng([self.seed, i])
        gt = np.asarray(self.gt[i])
        ids = [int(gt[v, u]) for u, v in positive if gt[v, u] != 0]
        if not ids or rng.random() < self.miss_rate:
            return None
        mask = gt == max(set(ids), key=ids.count)  # the object most of the clicks are on
        if rng.random() < self.merge_rate:
            ring = ndimage.binary_dilation(mask, iterations=2) & ~mask
            near = [int(k) for k in np.unique(gt[ring]) if k != 0 and not any(gt[v, u] == k for u, v in negative)]
            if near:
                mask |= gt == near[int(rng.integers(len(near)))]
        edge = rng.integers(3)
        if edge == 1:
            mask = ndimage.binary_erosion(mask) if ndimage.binary_erosion(mask).any() else mask
        elif edge == 2:
            mask = ndimage.binary_dilation(mask)
        for u, v in negative:
            if mask[v, u]:
                mask &= gt != gt[v, u]
        return mask


class ClassicalPromptSegmenter:
    """No weights: the segment holding the first positive click at the classical segmenter's middle
    level, minus any segment of that level a negative click is in."""

    name = "classical"

    def __init__(self):
        from ...data.labels2d.classical import ClassicalSegmenter

        self.segmenter = ClassicalSegmenter()

    def __call__(self, i, rgb, positive, negative):
        levels = self.segmenter.hierarchy(rgb)
        seg = levels[len(levels) // 2]
        ids = {int(seg[v, u]) for u, v in positive}
        mask = np.isin(seg, list(ids))
        for u, v in negative:
            mask &= seg != seg[v, u]
        return mask if mask.any() else None


class SamPromptSegmenter:
    """segment-anything's point-prompted predictor (a local checkpoint): the highest-scoring of its three
    masks for the clicks."""

    name = "sam"

    def __init__(self, checkpoint: str, model_type: str = "vit_h", device: str = "auto"):
        from ...data.labels2d.sam import import_segment_anything, load_sam

        sa = import_segment_anything()
        self.predictor = sa.SamPredictor(load_sam(checkpoint, model_type, device))

    def __call__(self, i, rgb, positive, negative):
        pts = np.asarray(positive + negative, dtype=np.float64) + 0.5
        lab = np.asarray([1] * len(positive) + [0] * len(negative))
        self.predictor.set_image(np.ascontiguousarray(rgb[..., :3], dtype=np.uint8))
        masks, scores, _ = self.predictor.predict(point_coords=pts, point_labels=lab, multimask_output=True)
        return np.asarray(masks[int(np.argmax(scores))], dtype=bool)


def make_prompt_segmenter(name: str, scene, sam_checkpoint: Optional[str] = None, seed: int = 0):
    """``auto``: SAM with a checkpoint, else the simulator on a scene with GT instance maps of every
    frame, else the classical segmenter."""
    if name == "auto":
        name = "sam" if sam_checkpoint else ("sim" if _has_all_gt(scene) else "classical")
    if name == "sam":
        if not sam_checkpoint or not Path(sam_checkpoint).is_file():
            raise SdfsegError(f"--sam-checkpoint: '{sam_checkpoint}' not found (the sam segmenter needs a local "
                              "segment-anything checkpoint; --segmenter classical needs no weights)")
        return SamPromptSegmenter(sam_checkpoint)
    if name == "sim":
        if not _has_all_gt(scene):
            raise SdfsegError(f"--segmenter sim: {scene.path} has no GT instance maps of every frame to simulate from")
        return SimulatedPromptSegmenter(scene.gt.instance, seed)
    if name == "classical":
        return ClassicalPromptSegmenter()
    raise SdfsegError(f"--segmenter: expected auto, sam, sim or classical, got '{name}'")


def _has_all_gt(scene) -> bool:
    from ...data.scene import FrameSubset

    return scene.gt is not None and scene.gt.instance is not None and not isinstance(scene.gt.instance, FrameSubset)


# ---- the object field ------------------------------------------------------------------------------------
def _rgb_uint8(scene, i: int) -> np.ndarray:
    return np.clip(np.asarray(scene.rgb_float(i)) * 255.0 + 0.5, 0, 255).astype(np.uint8)


@dataclass
class ViewMasks:
    frames: list[int]
    masks: list[np.ndarray]
    pixels: dict[int, tuple[list, list]]
    """Per frame the visible positive and negative prompt pixels."""


def prompt_masks(run, prompt: Prompt, segmenter, frames, tol: float) -> ViewMasks:
    """The segmenter's answer in each of ``frames`` where a positive prompt point is visible."""
    out = ViewMasks([], [], {})
    for i in frames:
        i = int(i)
        pos = visible_pixels(run, i, prompt.positive, tol)
        neg = visible_pixels(run, i, prompt.negative, tol) if len(prompt.negative) else []
        out.pixels[i] = (pos, neg)
        if not pos:
            continue
        m = segmenter(i, _rgb_uint8(run.scene, i), pos, neg)
        if m is not None and m.any():
            out.frames.append(i)
            out.masks.append(np.asarray(m, dtype=bool))
    return out


def _depth_t(run, i: int, pix: np.ndarray, scale: torch.Tensor) -> Optional[torch.Tensor]:
    """Ray distance of the sensor depth at pixels ``pix`` of frame ``i`` when the run trains with depth-guided
    samples (:func:`sdfseg.methods.hierarchy.run.frame_depth`), else None."""
    from ..hierarchy.run import frame_depth

    z = frame_depth(run, i)
    if z is None:
        return None
    return torch.as_tensor(np.asarray(z).reshape(-1)[pix], dtype=torch.float32, device=scale.device) * scale


def pair_loss(prob: torch.Tensor, rgb: torch.Tensor, patches: int, size: int, sigma: float) -> torch.Tensor:
    """Ray-pair RGB term over ``patches`` patches of ``size^2`` consecutive rays (``prob [patches*size^2]``,
    ``rgb [patches*size^2, 3]``): mean over the pairs of each patch of ``exp(-|c_i - c_j|^2 / 2 sigma^2)
    |p_i - p_j|``."""
    p = prob.view(patches, size * size)
    c = rgb.view(patches, size * size, 3)
    sim = torch.exp(-torch.cdist(c, c) ** 2 / (2.0 * sigma ** 2))
    diff = (p[:, :, None] - p[:, None, :]).abs()
    n = size * size
    return (sim * diff).sum() / (patches * n * (n - 1))


def train_object_field(run, views: ViewMasks, cfg: PromptConfig, progress: bool = True) -> FeatureHead:
    """Train the object field on the views' masks with the run's frozen backbone; returns it (on the
    run's device, installed as ``run.model.heads[OBJECT]``)."""
    from ...progress import Progress

    if not views.frames:
        raise SdfsegError("the prompt is visible in no training view (or the segmenter answered none): "
                          "click on an object the run reconstructs")
    model, dev = run.model, run.device
    with torch.random.fork_rng(devices=[]):
        torch.random.default_generator.manual_seed(cfg.seed + 3)
        head = FeatureHead(run.cfg.model.feature_dim, dim=1, hidden=32, layers=2, num_freqs=4, detach_geometry=True,
                           grid_levels=8, log2_hashmap_size=15, max_resolution=256,
                           backend=run.cfg.model.encoding.backend).to(dev)
    for p in model.parameters():
        p.requires_grad_(False)
    model.heads[OBJECT] = head
    groups = [{"params": head.mlp_parameters(), "lr": cfg.lr}]
    if head.grid_parameters():
        groups.append({"params": head.grid_parameters(), "lr": cfg.grid_lr})
    opt = torch.optim.Adam(groups, betas=(0.9, 0.99), eps=1e-15)
    s = run.scene
    h, w = s.hw
    rng = np.random.default_rng(cfg.seed)
    err = [np.ones(h * w) for _ in views.frames]
    targets = [torch.as_tensor(m.reshape(-1), dtype=torch.float32, device=dev) for m in views.masks]
    ps = cfg.patch_size
    n_patch = cfg.patches * ps * ps
    n_err = int(round(cfg.error_share * max(0, cfg.rays - n_patch)))
    n_uni = max(0, cfg.rays - n_patch - n_err)
    model.eval()
    with Progress(cfg.iterations, "object field", progress) as bar:
        for step in range(cfg.iterations):
            j = int(rng.integers(len(views.frames)))
            i = views.frames[j]
            e = err[j] / err[j].sum()
            top = rng.integers(0, h - ps + 1, size=cfg.patches)
            left = rng.integers(0, w - ps + 1, size=cfg.patches)
            dv, du = np.meshgrid(np.arange(ps), np.arange(ps), indexing="ij")
            patch = ((top[:, None] + dv.reshape(-1)) * w + left[:, None] + du.reshape(-1)).reshape(-1)
            pix = np.concatenate([patch, rng.choice(h * w, size=n_err, p=e), rng.integers(0, h * w, size=n_uni)])
            o, d, scale = _ray(s, i, pix % w, pix // w, dev)
            out = model.render(o, d, _depth_t(run, i, pix, scale), need_normals=False)
            logit = out[OBJECT][:, 0]
            y = targets[j][torch.as_tensor(pix, device=dev)]
            prob = torch.sigmoid(logit)
            bce = F.binary_cross_entropy_with_logits(logit, y)
            pairs = pair_loss(prob[:n_patch], out["rgb"][:n_patch].detach(), cfg.patches, ps, cfg.pair_sigma)
            loss = bce + cfg.pair_weight * pairs
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            err[j][pix] = np.abs(prob.detach().cpu().numpy() - y.cpu().numpy()) + 1e-3
            bar.update(1, bce=float(bce.detach()), pairs=float(pairs.detach()))
    return head


@torch.no_grad()
def render_object_mask(run, i: int) -> np.ndarray:
    """The object field's mask (probability > 0.5) of frame ``i`` ``[H, W]`` bool."""
    s = run.scene
    h, w = s.hw
    v, u = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    o, d, _ = _ray(s, i, u.reshape(-1), v.reshape(-1), run.device)
    out = render_rays_chunked(run.model, o, d, run.cfg.render.chunk, (OBJECT, "acc"))
    return ((out[OBJECT][:, 0] > 0) & (out["acc"] > 0.5)).cpu().numpy().reshape(h, w)


def object_mesh(run, head: FeatureHead, resolution: int):
    """The object's watertight mesh (world coordinates), or None when the field owns no surface."""
    from ...export.mesh import cut_solid, extract_channel_meshes, label_solid, to_world

    model = run.model
    label = label_solid(model.scene_sdf, lambda p: (head(model.sdf(p)[1], p)[:, 0] > 0).long(), resolution,
                        BOUND_RADIUS, run.device)
    fn = cut_solid(model.scene_sdf, label, BOUND_RADIUS, 2)
    meshes = extract_channel_meshes(fn, 2, resolution, BOUND_RADIUS, run.device, channels=[1], progress=False)
    return to_world(meshes[1], run.scene.normalization) if 1 in meshes else None


# ---- scores --------------------------------------------------------------------------------------------
def mask_scores(pred: np.ndarray, gt: np.ndarray) -> tuple[float, float]:
    """IoU and pixel accuracy of a binary mask (IoU NaN when the GT mask is empty: such a view counts
    in the accuracy only)."""
    inter = float((pred & gt).sum())
    union = float((pred | gt).sum())
    return (inter / union if gt.any() else float("nan")), float((pred == gt).mean())


def gt_object_id(run, prompt: Prompt, tol: float) -> int:
    """The GT instance the positive prompt points are on: the most common GT id at their visible pixels
    over the frames with GT maps (0 when none)."""
    from ...data.scene import FrameSubset

    gt = run.scene.gt.instance
    frames = gt.frames if isinstance(gt, FrameSubset) else range(run.scene.num_frames)
    votes: dict[int, int] = {}
    for i in frames:
        g = np.asarray(gt[int(i)])
        for u, v in visible_pixels(run, int(i), prompt.positive, tol):
            k = int(g[v, u])
            if k:
                votes[k] = votes.get(k, 0) + 1
    return max(votes, key=votes.get) if votes else 0


def clicked_object(run, prompt: Prompt) -> int:
    """The GT instance under the first positive 2D click (0 without one or without GT of its frame)."""
    from ...data.scene import FrameSubset

    gt = run.scene.gt.instance
    for name, u, v, positive in prompt.clicks:
        i = run.scene.frame_names.index(name)
        if positive and not (isinstance(gt, FrameSubset) and i not in set(gt.frames.tolist())):
            return int(np.asarray(gt[i])[int(v), int(u)])
    return 0


def evaluate_prompt(run, prompt: Prompt, segmenter, test_masks: dict[int, np.ndarray], tol: float,
                    obj: Optional[int] = None) -> dict:
    """SANeRF-HQ metrics over the test views (IoU averaged over the views that show the object, pixel
    accuracy over all) of the object field's masks,
    of the segmenter's raw masks (where the prompt is visible in the test view; empty elsewhere) and of
    the run's own instance of the object (its test maps, ``RUN/test/instance``; the id the prompt's
    visible pixels show most). The object scored is ``obj``, else the GT object under the first 2D
    click, else the one the prompt's points are on most."""
    from ...io import read_label_png

    s = run.scene
    obj = obj or clicked_object(run, prompt) or gt_object_id(run, prompt, tol)
    if obj == 0:
        return {"gt_object": 0, "note": "the prompt is on no GT object"}
    test = [int(i) for i in s.split["test"]]
    raw = prompt_masks(run, prompt, segmenter, test, tol)
    raw_by = dict(zip(raw.frames, raw.masks))
    inst_dir = run.run_dir / "test" / "instance"
    run_maps = {i: read_label_png(inst_dir / f"{s.frame_names[i]}.png") for i in test
                if (inst_dir / f"{s.frame_names[i]}.png").exists()}
    votes: dict[int, int] = {}
    for i, m in run_maps.items():
        for u, v in raw.pixels.get(i, ([], []))[0]:
            k = int(m[v, u])
            votes[k] = votes.get(k, 0) + 1
    run_id = max(votes, key=votes.get) if votes else 0
    rows: dict[str, list] = {"field": [], "raw_masks": [], "run_instance": []}
    for i in test:
        g = np.asarray(s.gt.instance[i]) == obj
        h, w = g.shape
        rows["field"].append(mask_scores(test_masks[i], g))
        rows["raw_masks"].append(mask_scores(raw_by.get(i, np.zeros((h, w), bool)), g))
        if i in run_maps:
            rows["run_instance"].append(mask_scores(run_maps[i] == run_id if run_id else np.zeros((h, w), bool), g))
    res = {"gt_object": obj, "run_instance_id": run_id, "test_views": len(test)}
    shown = sum(bool((np.asarray(s.gt.instance[i]) == obj).any()) for i in test)
    if shown == 0:
        res["note"] = "the object is in no test view: nothing to score"
        return res
    res["test_views_with_object"] = shown
    for k, v in rows.items():
        if v:
            a = np.asarray(v)
            res[k] = {"miou": float(np.nanmean(a[:, 0])), "accuracy": float(a[:, 1].mean())}
    return res


def object_mesh_fscore(run, mesh, obj: int, tau: float = 0.05) -> Optional[dict]:
    """Chamfer and F-score at ``tau`` of the object's mesh against the GT mesh of object ``obj`` (scenes
    with GT meshes), or None."""
    from ...eval.meshes import chamfer_fscore, scene_gt_meshes, surface_samples

    if mesh is None or obj == 0:
        return None
    gt = scene_gt_meshes(run.scene, 192)
    if gt is None:
        return None
    if obj not in gt:
        return None
    return chamfer_fscore(surface_samples(mesh, 20000), surface_samples(gt[obj], 20000), tau)


# ---- one prompt, end to end ---------------------------------------------------------------------------------
def run_prompt(run, prompt: Prompt, segmenter, cfg: PromptConfig, out_dir: Path, progress: bool = True,
               target: Optional[int] = None) -> dict:
    """Train the object field of ``prompt`` on ``run`` and write, in ``out_dir``: ``masks/<frame>.png`` (test
    views, 255 = object), ``object.ply`` (world coordinates), ``object_field.pt`` (the field's weights),
    ``prompt.json`` (the prompt, the views it was seen in) and, on scenes with GT, ``metrics.json`` (of GT
    object ``target``, by default the clicked one: :func:`evaluate_prompt`). Every
    file is written atomically once everything is computed. Returns the metrics (or ``{}``)."""
    from ...export.mesh import save_ply
    from ...io import atomic_path, save_image_atomic, write_json_atomic

    s = run.scene
    views = prompt_masks(run, prompt, segmenter, s.split["train"], cfg.depth_tolerance)
    head = train_object_field(run, views, cfg, progress)
    test_masks = {int(i): render_object_mask(run, int(i)) for i in s.split["test"]}
    mesh = object_mesh(run, head, cfg.mesh_resolution)
    metrics: dict = {}
    if s.gt is not None and s.gt.instance is not None:
        metrics = evaluate_prompt(run, prompt, segmenter, test_masks, cfg.depth_tolerance, target)
        f = object_mesh_fscore(run, mesh, metrics.get("gt_object", 0))
        if f is not None:
            metrics["mesh"] = f
    norm = s.normalization
    info = {"segmenter": segmenter.name, "clicks": [list(c) for c in prompt.clicks],
            "positive_world": norm.to_world(prompt.positive).tolist(),
            "negative_world": norm.to_world(prompt.negative).tolist() if len(prompt.negative) else [],
            "train_views_with_masks": [s.frame_names[i] for i in views.frames],
            "mask_pixels": [int(m.sum()) for m in views.masks], "config": vars(cfg)}
    for i, m in test_masks.items():
        save_image_atomic(out_dir / "masks" / f"{s.frame_names[i]}.png", m.astype(np.uint8) * 255)
    if mesh is not None:
        save_ply(out_dir / "object.ply", mesh)
    with atomic_path(out_dir / "object_field.pt") as tmp:
        torch.save(head.state_dict(), tmp)
    write_json_atomic(out_dir / "prompt.json", info)
    if metrics:
        write_json_atomic(out_dir / "metrics.json", metrics)
    del run.model.heads[OBJECT]
    return metrics


def gt_object_clicks(scene, min_pixels: int = 50) -> list[tuple[int, int, int, int]]:
    """One click per GT thing object of the training frames: ``(object id, frame, u, v)`` at the most
    interior pixel (farthest from the mask's edge) of the frame where the object is largest."""
    from ...data.scene import FrameSubset

    gt, sem = scene.gt.instance, scene.gt.semantic
    if isinstance(gt, FrameSubset):
        raise SdfsegError(f"{scene.path}: --gt-objects needs GT instance maps of the training frames")
    best: dict[int, tuple[int, int]] = {}
    for i in scene.split["train"]:
        g = np.asarray(gt[int(i)])
        c = np.asarray(sem[int(i)])
        ids, counts = np.unique(g, return_counts=True)
        for k, n in zip(ids.tolist(), counts.tolist()):
            if k == 0 or n < min_pixels:
                continue
            cls = int(np.bincount(c[g == k].ravel()).argmax())
            if not scene.classes.is_thing(cls):
                continue
            if n > best.get(k, (0, -1))[0]:
                best[k] = (n, int(i))
    out = []
    for k, (_, i) in sorted(best.items()):
        inside = np.pad(np.asarray(gt[i]) == k, 1)
        dist = ndimage.distance_transform_edt(inside)[1:-1, 1:-1]
        v, u = np.unravel_index(int(dist.argmax()), dist.shape)
        out.append((k, i, int(u), int(v)))
    return out
