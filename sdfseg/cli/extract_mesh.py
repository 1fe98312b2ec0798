"""Export one watertight mesh per object of a trained run (world coordinates, vertex colours from the
run's colour field).

Writes to RUN_DIR/meshes (or --out):
  object_<id>.ply / .obj   one mesh per object (ids = the instance ids of the rendered maps)
  scene.glb                --format glb: one glTF scene, a node per object named <class>_<id>, and a
                           'background' node (the room); opens in Blender, three.js, any glTF viewer
  points_<id>.ply          --points N: N surface points per object
  objects.json             the index: id, class, bounding box, centroid, volume, vertex count, files
                           (and on synthetic scenes each object's F-score against its GT object)
  scene_by_object.ply, scene_by_class.ply, mesh_metrics.json

Examples:
  python tools/extract_mesh.py runs/demo --resolution 512
  python tools/extract_mesh.py runs/demo --format ply glb obj --points 20000
  python tools/extract_mesh.py runs/demo --set render.mesh_support=1 --out runs/demo/meshes_grown
"""

from __future__ import annotations

import argparse
from pathlib import Path

from sdfseg.cli.options import add_progress_option
from sdfseg.errors import SdfsegError, run_cli


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run_dir", help="run directory written by tools/train.py")
    ap.add_argument("--resolution", type=int, default=256, help="grid points across the scene's bounding cube")
    ap.add_argument("--out", default=None, help="output folder (default RUN_DIR/meshes)")
    ap.add_argument("--format", nargs="+", default=["ply"], metavar="FMT",
                    help="one or more of ply, glb, obj (default ply)")
    ap.add_argument("--points", type=int, default=0, help="also N surface points per object (PLY point clouds)")
    ap.add_argument("--no-colors", action="store_true", help="no vertex colours (skips the colour field)")
    ap.add_argument("--set", nargs="+", action="extend", default=[], metavar="render.KEY=VALUE",
                    help="mesh options other than the run's config (render.* keys only, e.g. render.mesh_support=1)")
    add_progress_option(ap)
    args = ap.parse_args(argv)
    if args.resolution < 16:
        raise SdfsegError(f"--resolution: expected >= 16, got {args.resolution}")
    if args.points < 0:
        raise SdfsegError(f"--points: expected >= 0, got {args.points}")
    bad = [o for o in args.set if not o.startswith("render.") or "=" not in o]
    if bad:
        raise SdfsegError(f"--set {bad[0]}: expected render.KEY=VALUE (the training's own keys cannot change "
                          "after it)")
    from sdfseg.export.scene import check_formats

    formats = check_formats(args.format)
    from sdfseg.core.carve import map_carve
    from sdfseg.training.pipeline import export_meshes, load_channel_table, load_ownership, load_run, use_ownership
    from sdfseg.training.rundir import RunLock

    run_dir = Path(args.run_dir)
    with RunLock(run_dir, "tools/extract_mesh.py"):  # not while a training run writes its meshes
        trainer = load_run(run_dir, args.set)
        table = load_channel_table(run_dir)
        grid = load_ownership(run_dir)
        use_ownership(trainer, table, grid)  # the meshes follow the rendered maps ...
        trainer.model.sdf.carve = map_carve(trainer.model, trainer.scene, trainer.cfg.render)  # ... and their carve
        rep = export_meshes(trainer, table, args.resolution, Path(args.out) if args.out else None,
                            progress=not args.no_progress, formats=formats, points=args.points,
                            colors=not args.no_colors, support=grid)
    print(f"wrote {len(rep['objects'])} object meshes ({', '.join(formats)}) and objects.json to "
          f"{args.out or run_dir / 'meshes'}")
    if "gt_comparison" in rep:
        g = rep["gt_comparison"]
        for r in g["objects"]:
            cd = "-" if r["chamfer"] is None else f"{r['chamfer']:.4f}"
            print(f"  GT object {r['gt_object']:3d} <- channel {str(r['pred_channel']):>4}: chamfer {cd} m, "
                  f"F-score {r['fscore']:.3f}")
        print(f"mean F-score@{g['tau']} m: {g['mean_fscore']:.3f}")
    return 0


def console() -> None:
    """Console entry point."""
    run_cli(main)


if __name__ == "__main__":
    console()
