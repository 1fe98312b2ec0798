"""End-to-end run: train, give channels classes, render test views, evaluate, export meshes.

Everything lands in the run directory::

    config.yaml          resolved config
    checkpoints/last.pt  latest checkpoint (atomic)
    tb/                  TensorBoard event logs
    channels.json        what each SDF channel is (object id, class) for the rendered maps and meshes
    ownership.npz        multi-view ownership vote (``render.vote_grid`` > 0) the maps and meshes follow
    test/{rgb,depth,normal,instance,semantic}/<frame>.png   rendered test views (evaluator input)
    metrics.json         evaluator output (pq, sq, rq, miou, ea, per class, noisy-label baseline)
    meshes/              object_<id>.ply per object, scene_by_object.ply, scene_by_class.ply, mesh_metrics.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import numpy as np
import torch
import trimesh

from ..config import Config, check_resume_changes
from ..core.carve import map_carve
from ..core.model import BOUND_RADIUS
from ..core.ownership import OwnershipGrid, follow_ownership
from ..errors import SdfsegError
from ..export.mesh import extract_channel_meshes, palette, save_ply, scene_mesh, to_world
from ..io import write_json_atomic
from ..methods.outputs import ChannelTable, save_channel_table, write_test_views
from .rundir import RunLock, prepare_fresh_run, read_run_config
from .trainer import Trainer, resolve_config

OWNERSHIP_FILE = "ownership.npz"


def use_renderer(trainer: Trainer, maps: bool = False) -> None:
    """Set up the renderer of ``render.renderer`` for everything after training: ``surface`` samples
    the scene SDF on a grid (``render.grid_resolution``) for surface-first rendering. ``maps``: as the
    maps and meshes are made, with ``render.beta`` and ``render.carve_margin`` (the votes use neither)."""
    r, model = trainer.cfg.render, trainer.model
    carve = map_carve(model, trainer.scene, r) if maps else None
    if maps and carve is None and model.sdf.carve is None:  # the same SDF: the votes' grid stands
        model.render_beta = r.beta
        return
    model.use_renderer(r.renderer, r.grid_resolution, r.surface_samples, r.beta if maps else None, carve)


def channel_table(trainer: Trainer) -> ChannelTable:
    """What each of the run's slots is (:meth:`sdfseg.methods.Method.channel_table`)."""
    return trainer.method.channel_table(trainer)


def use_ownership(trainer: Trainer, table: ChannelTable, grid: Optional[OwnershipGrid]) -> None:
    """Make the model's renders and meshes follow ``grid`` (None: the channels' own ownership)."""
    follow_ownership(trainer.model, table.instance, grid)


def load_ownership(run_dir: Path) -> Optional[OwnershipGrid]:
    f = run_dir / OWNERSHIP_FILE
    return OwnershipGrid.load(f) if f.exists() else None


def load_channel_table(run_dir: Path) -> ChannelTable:
    f = run_dir / "channels.json"
    if not f.exists():
        raise SdfsegError(f"{f}: not found (the run has not finished training)")
    rows = json.loads(f.read_text())["channels"]
    return ChannelTable(is_object=np.array([r["object"] for r in rows]), classes=np.array([r["class"] for r in rows]),
                        votes=np.array([r["votes"] for r in rows]),
                        instance=np.array([r["instance_id"] for r in rows], dtype=np.int64))


def render_and_evaluate(trainer: Trainer, table: ChannelTable, progress: bool = True) -> dict:
    """Render the test split into ``run/test`` and evaluate it like ``tools/evaluate.py`` would."""
    from ..eval.report import evaluate_prediction_dir

    run_dir = trainer.run_dir
    test_dir = run_dir / "test"
    write_test_views(trainer.model, trainer.scene, test_dir, table, trainer.method, trainer.cfg.render.chunk,
                     progress=progress)
    if trainer.scene.gt is None:
        print("scene has no GT maps: skipping evaluation")
        return {}
    baseline = trainer.cfg.data.label_source if trainer.cfg.data.label_source in trainer.scene.labels else None
    metrics = evaluate_prediction_dir(trainer.scene, test_dir, baseline=baseline)
    write_json_atomic(run_dir / "metrics.json", metrics)
    return metrics


def grouped_sdf(fn, table: ChannelTable):
    """SDF function whose column ``r`` is the union (min) of the channels merged into instance ``r``
    and whose other merged columns never win (1 above it): marching cubes on column ``r`` then gives
    the merged object's surface, and the min over columns (the scene) is unchanged."""
    groups = []
    for r in np.unique(table.instance[table.is_object]):
        members = np.flatnonzero(table.is_object & (table.instance == r))
        if members.size > 1:
            groups.append((int(r), torch.as_tensor(members)))
    if not groups:
        return fn

    def merged(p: torch.Tensor) -> torch.Tensor:
        s = fn(p)
        out = s.clone()
        for r, members in groups:
            union = s[:, members].min(dim=1).values
            out[:, members] = (union + 1.0)[:, None]
            out[:, r] = union
        return out

    return merged


def supported_sdf(fn, table: ChannelTable, grid: Optional[OwnershipGrid], dilation: int, device="cpu"):
    """SDF function for per-object meshes cut to where the ownership vote saw each object: column ``r`` of
    an object instance stays as it is inside the voxels of ``grid`` voted to ``r``, grown by ``dilation``
    voxels, and is at least one voxel's width above 0 elsewhere, so its mesh stays closed and keeps no
    surface the views never showed as that object (the rest of a channel's zero set: pieces in unseen
    space, floor it owns far away). An object with no voted voxel, ``grid`` None or ``dilation`` < 0
    leaves ``fn`` as it is. With ``grid.refine`` the region also holds the boundary voxels beside the
    object's, where the refined vote may give it points. Each object's region is an int8 grid on ``device``
    (1 inside, 0 elsewhere)."""
    if grid is None or dilation < 0:
        return fn
    from scipy.ndimage import binary_dilation

    g = grid.resolution
    target = grid.target.cpu().numpy().reshape(g, g, g)
    border = grid.boundary().cpu().numpy().reshape(g, g, g) > 0 if grid.refine else None
    cube = np.ones((3, 3, 3), dtype=bool)
    regions = {}
    for r in np.unique(table.instance[table.is_object]):
        voted = target == r
        if voted.any():
            grown = binary_dilation(voted, cube, iterations=dilation) if dilation > 0 else voted
            if border is not None:  # the refined border runs inside the boundary voxels beside the object
                grown = grown | (binary_dilation(voted, cube) & border)
            # a grid of its own: 1 in the object's region, 0 elsewhere (lookup: -1 outside the grid)
            regions[int(r)] = OwnershipGrid(torch.as_tensor(grown.reshape(-1).astype(np.int8), device=device), g,
                                            grid.radius)
    if not regions:
        return fn
    above = 2.0 * grid.radius / g

    def cut(p: torch.Tensor) -> torch.Tensor:
        s = fn(p)
        out = s.clone()
        for r, region in regions.items():
            out[:, r] = torch.where(region.lookup(p) > 0, s[:, r], s[:, r].clamp(min=above))
        return out

    return cut


def export_meshes(trainer: Trainer, table: ChannelTable, resolution: int, out_dir: Optional[Path] = None,
                  progress: bool = True, formats: tuple[str, ...] = ("ply",), points: int = 0,
                  colors: bool = True, support: Optional[OwnershipGrid] = None) -> dict:
    """Write one mesh per object (``formats``: ply, glb (one scene, a node per object and the room),
    obj; vertex colours from the colour field unless ``colors`` is False), ``objects.json`` (the index:
    id, class, bounding box, centroid, volume, files), optional per-object point clouds (``points`` per
    object) and the scene meshes coloured by object and by class; score the objects against GT meshes
    when the scene has them (the demo's analytic shapes, or a ``gt_meshes/`` folder such as the room
    scenes'). With ``support`` (the run's ownership vote) and ``render.mesh_support >= 0`` each object's
    mesh is cut to the voxels voted to it (:func:`supported_sdf`); the scene meshes are not cut."""
    from ..export.scene import check_formats, drop_bounding_shell, surface_colors, write_object_exports

    formats = check_formats(formats)
    out_dir = out_dir or trainer.run_dir / "meshes"
    model, dev = trainer.model, trainer.device
    model.eval()
    fn = grouped_sdf(trainer.method.mesh_sdf(trainer, table), table)
    objects = sorted({int(i) for i in table.instance[table.is_object]})
    cut = supported_sdf(fn, table, support, trainer.cfg.render.mesh_support, dev)
    meshes = extract_channel_meshes(cut, model.num_channels, resolution, BOUND_RADIUS, dev, channels=objects,
                                    progress=progress)
    chunk = trainer.cfg.render.chunk
    if colors:
        for m in meshes.values():
            m.visual.vertex_colors = np.c_[surface_colors(model, np.asarray(m.vertices), chunk),
                                           np.full(len(m.vertices), 255, np.uint8)]
    norm = trainer.scene.normalization
    world = {k: to_world(m, norm) for k, m in meshes.items()}
    whole, owner = scene_mesh(fn, min(resolution, 256), BOUND_RADIUS, dev)
    inst = table.instance[owner]
    cols = palette(len(table.instance))
    by_obj = to_world(whole, norm)
    by_obj.visual.vertex_colors = np.c_[cols[inst], np.full(len(inst), 255, np.uint8)]
    save_ply(out_dir / "scene_by_object.ply", by_obj)
    by_cls = to_world(whole, norm)
    ccols = palette(trainer.scene.classes.num_classes, seed=7)
    by_cls.visual.vertex_colors = np.c_[ccols[table.classes[owner]], np.full(len(inst), 255, np.uint8)]
    save_ply(out_dir / "scene_by_class.ply", by_cls)
    bg = ~table.is_object[owner]  # the room: the faces of the scene surface no object owns
    background = drop_bounding_shell(whole.submesh([np.flatnonzero(bg[np.asarray(whole.faces)].all(axis=1))],
                                                   append=True)) if len(whole.faces) else trimesh.Trimesh()
    if colors and len(background.vertices):
        background.visual.vertex_colors = np.c_[surface_colors(model, np.asarray(background.vertices), chunk),
                                                np.full(len(background.vertices), 255, np.uint8)]
    background = to_world(background, norm)
    save_ply(out_dir / "background.ply", background)
    report: dict = {"objects": {int(k): {"class": int(table.classes[k]), "faces": int(len(m.faces)),
                                         "watertight": bool(m.is_watertight)} for k, m in world.items()}}
    from ..eval.meshes import object_mesh_metrics, scene_gt_meshes

    gt = scene_gt_meshes(trainer.scene, min(resolution, 256))
    scores: dict[int, dict] = {}
    if gt is not None:
        report["gt_comparison"] = object_mesh_metrics(world, gt)
        for r in report["gt_comparison"]["objects"]:
            if r["pred_channel"] is not None:
                scores[int(r["pred_channel"])] = {"gt_object": int(r["gt_object"]), "fscore": float(r["fscore"])}
    write_json_atomic(out_dir / "mesh_metrics.json", report)
    names = trainer.scene.classes
    classes = {k: (int(table.classes[k]), names.name(int(table.classes[k]))) for k in world}
    report["index"] = write_object_exports(out_dir, world, classes, formats, background, points,
                                           extra={"run": trainer.run_dir.name, "resolution": int(resolution)},
                                           row_extra=scores)
    return report


def check_startup(trainer: Trainer) -> None:
    """What the end of the run needs, checked before training: test views to render."""
    scene = trainer.scene
    if len(scene.split.get("test", ())) == 0:
        raise SdfsegError(f"{scene.path}: the test split is empty ({scene.layout} layout, {scene.num_frames} frames): "
                          "a run renders and evaluates its test views after training; give the scene test frames "
                          "(e.g. a 'test' list in its splits file)")
    from ..data.normalize import inward_capture

    warning = inward_capture(scene)
    if warning:
        print(f"warning: {scene.path}: {warning}", file=sys.stderr, flush=True)


def run(cfg: Config, resume: bool = False, progress: bool = True, overwrite: bool = False) -> dict:
    """Train (or resume) and finish the run in ``cfg.run.dir``; returns the metrics dict.

    The run directory is locked for the whole run (:class:`sdfseg.training.rundir.RunLock`). A fresh run
    refuses a directory that already holds a run unless ``overwrite`` (which clears it first).
    ``resume`` continues from the last checkpoint (or only re-renders a finished run); the config
    may then differ from the run's only in the keys :data:`sdfseg.config.RESUMABLE` lists, and
    everything is checked before the run's config.yaml is rewritten.
    """
    run_dir = Path(cfg.run.dir)
    with RunLock(run_dir, "tools/train.py"):
        previous = read_run_config(run_dir, overrides=[], missing="--resume: nothing to resume") if resume else None
        if not resume:
            prepare_fresh_run(run_dir, overwrite)
        trainer = Trainer(cfg, progress=progress)
        if previous is not None:
            resolve_config(previous, trainer.device)
            check_resume_changes(previous, cfg, run_dir / "config.yaml")
        check_startup(trainer)
        stats = trainer.fit(resume=resume, progress=progress)
        if "psnr" in stats:
            print(f"trained {trainer.step} iterations in {stats['seconds']:.0f} s, final PSNR {stats['psnr']:.2f}")
        else:
            print(f"already trained ({trainer.step} iterations): rendering and evaluating only")
        return finish(trainer, progress)


def finish(trainer: Trainer, progress: bool = True) -> dict:
    """The end of a run: channel classes, ownership vote, test renders, metrics and meshes."""
    trainer.check_weights()  # no maps, metrics or meshes from a diverged model
    use_renderer(trainer)
    table = channel_table(trainer)
    grid, table = trainer.method.ownership(trainer, table)
    use_ownership(trainer, table, grid)
    if grid is not None:
        grid.save(trainer.run_dir / OWNERSHIP_FILE)
    else:
        (trainer.run_dir / OWNERSHIP_FILE).unlink(missing_ok=True)
    save_channel_table(trainer.run_dir / "channels.json", table, trainer.scene.classes)
    use_renderer(trainer, maps=True)  # the maps and meshes only: the votes above used the trained density and SDF
    metrics = render_and_evaluate(trainer, table, progress)
    if metrics:
        from ..eval.report import format_table

        print(format_table(metrics))
    if trainer.cfg.render.export_mesh:
        rep = export_meshes(trainer, table, trainer.cfg.render.mesh_resolution, progress=progress, support=grid)
        if "gt_comparison" in rep:
            g = rep["gt_comparison"]
            print(f"meshes: {len(rep['objects'])} objects, mean F-score@{g['tau']} m = {g['mean_fscore']:.3f} "
                  f"({g['matched']}/{g['gt_objects']} GT objects matched)")
    return metrics


def load_run(run_dir: Path, overrides: Optional[list[str]] = None) -> Trainer:
    """Rebuild the trainer of a finished or interrupted run from its config and last checkpoint."""
    run_dir = Path(run_dir)
    cfg = read_run_config(run_dir, overrides)
    cfg.run.dir = str(run_dir)
    trainer = Trainer(cfg)
    trainer.load_checkpoint()
    return trainer
