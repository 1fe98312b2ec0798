"""Click queries on a run's hierarchical feature head: score maps and masks in 2D, segments in 3D.

Examples:
  python tools/query.py runs/demo_hierarchy --frame 0002 --click 60 80 --thresholds 0.7 0.8 0.9
  python tools/query.py runs/demo_hierarchy --frame 0002 --click 60 80 --click 90 30 --apply-to test
  python tools/query.py runs/demo_hierarchy --pose data/demo/pose/0003.txt --click 50 70
  python tools/query.py runs/demo_hierarchy --3d --distances 0.02 0.05 0.1
  python tools/query.py runs/demo_hierarchy --3d --frame 0002 --click 60 80 --thresholds 0.9
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from sdfseg.errors import SdfsegError, run_cli

DESCRIPTION = """\
Query the hierarchical feature head of a run trained with features.enabled=true.

2D: the feature map of a view is rendered (a training or test frame with --frame, or a
novel camera with --pose FILE: a 4x4 camera-to-world text matrix in world units, OpenCV
axes, using the intrinsics of --frame or of the first frame). Each --click Y X picks the
feature under pixel (row Y, column X); every pixel scores (f . f_click + 1) / 2, several
clicks take the max (multi-select). A mask is score > threshold: high thresholds give
parts, lower ones whole objects, then groups. Written to OUT/<view>/: rgb.png (the
frame's photo, or the rendered image of a novel pose), features.png (3 principal
components), score.png, mask_<t>.png, overlay_<t>.png; plus OUT/query.json. Frames are
rendered like the training rays (depth-guided samples when the run trains with depth);
a novel pose (OUT/pose_<file stem>/) uses the SDF sampler. --apply-to test|train|all|NAME
applies the same query features to other frames (the answer is consistent across views).

3D (--3d): points back-projected from the rendered depth of the test frames, carrying
their rendered features (--points depth, the default; voxel-averaged), or the scene mesh
vertices (marching cubes of the SDF) with the head evaluated at each vertex (--points
mesh; these point features match the rendered ones only where the backbone's surfaces are
sharp). A kNN graph with edge length 1 - cos between features; connected components of the
edges shorter than each --distances value are the segments (small distance = parts,
larger = objects, groups). Written in world coordinates to OUT/3d/d<dist>/segments.ply
(coloured) and segment_<i>.ply (largest first); with clicks also OUT/3d/selection_<t>.ply.
"""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dir", type=Path, help="run directory (config.yaml + checkpoints/last.pt)")
    p.add_argument("--frame", default=None, metavar="NAME", help="frame to click in (e.g. 0002)")
    p.add_argument("--pose", type=Path, default=None, metavar="FILE", help="novel camera: 4x4 c2w text file")
    p.add_argument("--click", type=int, nargs=2, action="append", default=[], metavar=("Y", "X"),
                   help="pixel row and column of a click (repeat for multi-select)")
    p.add_argument("--thresholds", type=float, nargs="+", default=[0.7, 0.8, 0.9], metavar="T",
                   help="score thresholds of the written masks (default 0.7 0.8 0.9)")
    p.add_argument("--apply-to", nargs="+", default=[], metavar="FRAMES",
                   help="also apply the query to these frames: test, train, all, or frame names")
    p.add_argument("--out", type=Path, default=None, metavar="DIR", help="output folder (default RUN_DIR/query)")
    p.add_argument("--3d", dest="three_d", action="store_true", help="segment the scene in 3D")
    p.add_argument("--points", choices=("depth", "mesh"), default="depth",
                   help="3D points: back-projected rendered depth + rendered features of the test frames "
                        "(default), or the scene mesh vertices with the head's point features")
    p.add_argument("--distances", type=float, nargs="+", default=[0.02, 0.05, 0.1], metavar="D",
                   help="feature-distance thresholds (1 - cos) of the 3D segmentations (default 0.02 0.05 0.1)")
    p.add_argument("--mesh-resolution", type=int, default=128, help="marching cubes resolution (default 128)")
    p.add_argument("--knn", type=int, default=16, help="neighbours of the 3D kNN graph (default 16)")
    p.add_argument("--voxel", type=float, default=0.02,
                   help="voxel size in normalised units (the room fits in the unit sphere) for depth points; "
                        "0 = none (default 0.02)")
    p.add_argument("--min-size", type=int, default=50, help="smallest exported 3D segment in points (default 50)")
    p.add_argument("--max-segments", type=int, default=64, help="export at most this many segments per level")
    p.add_argument("--device", default=None, help="torch device (default: the run's train.device)")
    return p.parse_args(argv)


def frames_for(scene, names: list[str]) -> list[int]:
    from sdfseg.methods.hierarchy.run import frame_index

    out: list[int] = []
    for n in names:
        if n in ("test", "train"):
            out += [int(i) for i in scene.split[n]]
        elif n == "all":
            out += list(range(scene.num_frames))
        else:
            out.append(frame_index(scene, n, "--apply-to"))
    return list(dict.fromkeys(out))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from sdfseg.apps.query import check_clicks, check_thresholds, query_2d, query_3d, resolve_view
    from sdfseg.methods.hierarchy.run import load_feature_run

    thresholds = check_thresholds(args.thresholds)
    if not args.three_d and not args.click:
        raise SdfsegError("give at least one --click Y X (or --3d for a 3D segmentation)")
    if args.knn <= 0 or args.mesh_resolution < 8 or args.min_size < 1 or args.max_segments < 1 or args.voxel < 0:
        raise SdfsegError("--knn, --min-size, --max-segments must be positive, --voxel >= 0, --mesh-resolution >= 8")
    run = load_feature_run(args.run_dir, args.device)
    out = args.out if args.out is not None else args.run_dir / "query"
    qfeats = None
    if args.click:
        view = resolve_view(run, args.frame, args.pose)
        clicks = check_clicks(args.click, view.hw)
        summary = query_2d(run, view, clicks, thresholds, out, frames_for(run.scene, args.apply_to))
        qfeats = np.asarray(summary["query_features"], dtype=np.float32)
        for name, areas in summary["mask_area"].items():
            print(f"{name}: mask pixels " + ", ".join(f"t={t}: {a}" for t, a in areas.items()))
    if args.three_d:
        frames = run.scene.split["test"] if args.points == "depth" else []
        s = query_3d(run, out, args.distances, args.points, args.mesh_resolution, frames, args.knn, args.voxel or None,
                     args.min_size, args.max_segments, qfeats, thresholds)
        for d, sizes in s["segments"].items():
            print(f"3D distance {d}: {len(sizes)} segments (largest {sizes[:5]}) of {s['points']} points")
    print(f"wrote {out}")
    return 0


def console() -> None:
    """Console entry point."""
    run_cli(main)


if __name__ == "__main__":
    console()
