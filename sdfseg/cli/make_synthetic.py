"""Generate a procedural synthetic scene with exact ground truth in the Panoptic Lifting layout.

Example:
    python tools/make_synthetic.py data/synth --objects 6 --views 60 --noise under_seg_rate=0.3
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from sdfseg.data.label_noise import NoiseConfig, apply_overrides
from sdfseg.data.mask_sim import MaskSimConfig
from sdfseg.data.synthetic import generate_scene
from sdfseg.errors import run_cli


def _keys(cls) -> str:
    return ", ".join(f"{f.name} ({f.default})" for f in dataclasses.fields(cls))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Render a random room with furniture (analytic SDFs) along a smooth camera loop and write "
                    "color/depth/pose/intrinsics, GT semantic/instance/part/group maps, camera-frame normals, "
                    "simulated noisy Mask2Former-like labels (m2f_*), simulated SAM-like masks (masks_sim), "
                    "splits.json (every 5th frame from frame 2 is a test view), segmentation_data.pkl and "
                    "synthetic.json (the exact scene description). Same seed -> byte-identical files.",
        epilog=f"--noise keys (default): {_keys(NoiseConfig)}.  --mask-noise keys (default): {_keys(MaskSimConfig)}.")
    p.add_argument("out", type=Path, help="output scene folder (must be empty or absent unless --force)")
    p.add_argument("--objects", type=int, default=6, help="number of objects (default 6)")
    p.add_argument("--views", type=int, default=60, help="number of views along the trajectory (default 60)")
    p.add_argument("--height", type=int, default=120, help="image height in pixels (default 120)")
    p.add_argument("--width", type=int, default=160, help="image width in pixels (default 160)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--noise", action="append", default=[], metavar="KEY=VALUE",
                   help="override a label-noise setting (repeatable), e.g. --noise over_seg_rate=0.2")
    p.add_argument("--mask-noise", action="append", default=[], metavar="KEY=VALUE",
                   help="override a mask-simulator setting (repeatable), e.g. --mask-noise p_part=1")
    p.add_argument("--force", action="store_true", help="replace a non-empty output folder")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p.parse_args(argv)


def main() -> int:
    args = parse_args()
    noise = apply_overrides(NoiseConfig(), args.noise, "--noise")
    mask_noise = apply_overrides(MaskSimConfig(), args.mask_noise, "--mask-noise")
    out = generate_scene(args.out, objects=args.objects, views=args.views, height=args.height, width=args.width,
                         seed=args.seed, noise=noise, mask_noise=mask_noise, force=args.force, progress=not args.quiet)
    print(f"wrote {out}")
    return 0


def console() -> None:
    """Console entry point."""
    run_cli(main)


if __name__ == "__main__":
    console()
