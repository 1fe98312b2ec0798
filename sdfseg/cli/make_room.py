"""Generate a furnished room of the independent scene family (triangle meshes, ray-cast with Embree)
in the Panoptic Lifting layout, with Mask2Former-like labels (m2f_*), SAM-like over-segmentation
(sam_instance/, masks_sam/), GT maps and GT meshes per object (gt_meshes/).

The Mask2Former-like noise is calibrated per room so that the labels' own PQ^scene on the test
views is near the middle of 38-48 (printed, and recorded in room.json). Same seed -> byte-identical
files. Needs embreex (pip install -e .[scenes]).

Example:
  python tools/make_room.py data/rooms/room4 --seed 4
"""

from __future__ import annotations

import argparse
from pathlib import Path

from sdfseg.errors import run_cli


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out", type=Path, help="output scene folder (must be empty or absent unless --force)")
    p.add_argument("--seed", type=int, default=0, help="room seed: layout, furniture, cameras, noise (default 0)")
    p.add_argument("--views", type=int, default=80, help="views along the camera path (default 80; 20 are test views)")
    p.add_argument("--height", type=int, default=120, help="image height in pixels (default 120)")
    p.add_argument("--width", type=int, default=160, help="image width in pixels (default 160)")
    p.add_argument("--force", action="store_true", help="replace a non-empty output folder")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    args = p.parse_args(argv)
    from sdfseg.data.rooms import generate_room

    generate_room(args.out, seed=args.seed, views=args.views, height=args.height, width=args.width, force=args.force,
                  progress=not args.quiet)
    print(f"wrote {args.out}")
    return 0


def console() -> None:
    """Console entry point."""
    run_cli(main)


if __name__ == "__main__":
    console()
