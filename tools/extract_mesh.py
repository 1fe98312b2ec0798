#!/usr/bin/env python
"""Export one watertight mesh per object channel of a trained run (PLY, world coordinates).

Writes RUN_DIR/meshes/object_<id>.ply (ids = the instance ids of the rendered maps),
scene_by_object.ply and scene_by_class.ply (vertex colours), and mesh_metrics.json
(on synthetic scenes: per-object Chamfer distance and F-score against the GT geometry).

Example:
  python tools/extract_mesh.py runs/demo --resolution 512
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sdfseg.apps.cli import add_progress_option  # noqa: E402
from sdfseg.errors import SdfsegError, run_cli  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run_dir", help="run directory written by tools/train.py")
    ap.add_argument("--resolution", type=int, default=256, help="grid points across the scene's bounding cube")
    ap.add_argument("--out", default=None, help="output folder (default RUN_DIR/meshes)")
    add_progress_option(ap)
    args = ap.parse_args(argv)
    if args.resolution < 16:
        raise SdfsegError(f"--resolution: expected >= 16, got {args.resolution}")
    from sdfseg.training.pipeline import export_meshes, load_channel_table, load_ownership, load_run, use_ownership
    from sdfseg.training.rundir import RunLock

    run_dir = Path(args.run_dir)
    with RunLock(run_dir, "tools/extract_mesh.py"):  # not while a training run writes its meshes
        trainer = load_run(run_dir)
        table = load_channel_table(run_dir)
        use_ownership(trainer, table, load_ownership(run_dir))  # the meshes follow the rendered maps
        rep = export_meshes(trainer, table, args.resolution, Path(args.out) if args.out else None,
                            progress=not args.no_progress)
    print(f"wrote {len(rep['objects'])} object meshes to {args.out or run_dir / 'meshes'}")
    if "gt_comparison" in rep:
        g = rep["gt_comparison"]
        for r in g["objects"]:
            cd = "-" if r["chamfer"] is None else f"{r['chamfer']:.4f}"
            print(f"  GT object {r['gt_object']:3d} <- channel {str(r['pred_channel']):>4}: chamfer {cd} m, "
                  f"F-score {r['fscore']:.3f}")
        print(f"mean F-score@{g['tau']} m: {g['mean_fscore']:.3f}")
    return 0


if __name__ == "__main__":
    run_cli(main)
