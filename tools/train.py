#!/usr/bin/env python
"""Train sdfseg on a scene, then render the test views, evaluate them and export per-object meshes.

Examples:
  python tools/train.py confs/demo.yaml
  python tools/train.py confs/scannet.yaml --set data.path=/data/scannet/scene0050_02 train.iterations=50000
  python tools/train.py confs/demo.yaml --resume            # continue a killed run from its last checkpoint
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sdfseg.config import load_config  # noqa: E402
from sdfseg.errors import run_cli  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("config", help="YAML config (see confs/)")
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                    help="override config keys, e.g. train.iterations=2000 run.dir=runs/x")
    ap.add_argument("--resume", action="store_true", help="continue from RUN_DIR/checkpoints/last.pt")
    ap.add_argument("--no-progress", action="store_true", help="no progress bars")
    args = ap.parse_args()
    cfg = load_config(args.config, args.set)
    from sdfseg.pipeline import run

    run(cfg, resume=args.resume, progress=not args.no_progress)
    return 0


if __name__ == "__main__":
    run_cli(main)
