"""A synthetic COLMAP capture to try the COLMAP path end to end, and scoring a run of it against GT.

  make SCENE OUT   write OUT/colmap (images, a COLMAP text model under a random similarity transform with
                   pose noise and outlier points, no depth) and OUT/sensor (the same frames with the true
                   poses and sensor depth, transforms.json), both with SCENE's noisy instance labels
  score RUN SCENE  PQ^scene / mIoU / EA (object vs background) and per-object mesh F-score of a run of either,
                   against SCENE's GT, the run's world aligned to SCENE's by its camera centres

Example (the demo scene; instance-only runs of both captures):
  python tools/colmap_capture.py make data/demo data/demo_capture
  python tools/train.py confs/colmap.yaml --set data.path=data/demo_capture/colmap run.dir=runs/capture_colmap
  python tools/train.py confs/colmap.yaml --set data.path=data/demo_capture/sensor data.layout=transforms_json \
      train.depth_rays=0 run.dir=runs/capture_sensor
  python tools/colmap_capture.py score runs/capture_colmap data/demo
"""

from __future__ import annotations

import argparse
from pathlib import Path

from sdfseg.errors import run_cli


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    mk = sub.add_parser("make", help="write a synthetic capture from a scene with sensor depth")
    mk.add_argument("scene", type=Path)
    mk.add_argument("out", type=Path)
    mk.add_argument("--seed", type=int, default=0)
    mk.add_argument("--pose-noise-deg", type=float, default=0.2, help="rotation noise of the poses (degrees)")
    mk.add_argument("--pose-noise", type=float, default=0.002, help="position noise, x the scene size")
    mk.add_argument("--outliers", type=float, default=0.05, help="share of outlier points")
    mk.add_argument("--exposure", type=float, default=0.0,
                    help="per-frame exposure changes: colours times exp(N(0, EXPOSURE)) (0 = off)")
    sc = sub.add_parser("score", help="score a run of a capture against the source scene's GT")
    sc.add_argument("run", type=Path)
    sc.add_argument("scene", type=Path)
    sc.add_argument("--json", type=Path, default=None, help="also write the record here")
    args = ap.parse_args(argv)
    from sdfseg.apps.colmap_capture import format_score, score_run, write_capture

    if args.cmd == "make":
        info = write_capture(args.scene, args.out, args.seed, pose_noise_deg=args.pose_noise_deg,
                             pose_noise=args.pose_noise, outlier_share=args.outliers, exposure=args.exposure)
        print(f"wrote {args.out}/colmap ({info['frames']} frames, {info['points']} points + {info['outliers']} "
              f"outliers, scale {info['scale']:.3f}) and {args.out}/sensor")
    else:
        r = score_run(args.run, args.scene)
        print(format_score(r))
        if args.json:
            from sdfseg.io import write_json_atomic

            write_json_atomic(args.json, r)
    return 0


def console() -> None:
    """Console entry point."""
    run_cli(main)


if __name__ == "__main__":
    console()
