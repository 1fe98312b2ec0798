"""Train sdfseg on a scene, then render the test views, evaluate them and export per-object meshes.

Examples:
  python tools/train.py confs/demo.yaml
  python tools/train.py confs/scannet.yaml --set data.path=/data/scannet/scene0050_02 --set train.iterations=50000
  python tools/train.py confs/demo.yaml --set train.method=codebook run.dir=runs/demo_codebook   # another method
  python tools/train.py confs/demo.yaml --resume            # continue a killed run from its last checkpoint
  python tools/train.py runs/demo/config.yaml --resume --set render.vote_grid=0   # re-render a finished run

Methods (train.method): clustering (ClusteringSDF, the default), supervised (ObjectSDF++), semantic
(with train.mode=semantic), codebook (Unified-Lift).

The run directory (run.dir) is locked while the run lasts: a second run into it is refused.
A fresh run refuses a directory that already holds a run unless --overwrite is given (the old
run's outputs are then deleted first). --resume may change only the keys render.*, run.dir,
train.device, train.log_every, train.checkpoint_every, train.max_bad_steps, data.path,
data.missing_hint and features.head_iterations; every other key must match the run's config.yaml.
Given a run's own RUN/config.yaml, --resume continues the run in that folder (also after the folder
was moved or copied), unless --set run.dir=... says otherwise.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from sdfseg.cli.options import add_overwrite_option, add_progress_option, add_set_option
from sdfseg.config import load_config
from sdfseg.errors import SdfsegError, run_cli


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("config", help="YAML config (see confs/), or a run's config.yaml with --resume")
    add_set_option(ap)
    ap.add_argument("--resume", action="store_true",
                    help="continue from RUN_DIR/checkpoints/last.pt (a finished run is only re-rendered)")
    add_overwrite_option(ap)
    add_progress_option(ap)
    args = ap.parse_args(argv)
    if args.resume and args.overwrite:
        raise SdfsegError("--resume and --overwrite exclude each other (continue the run, or replace it)")
    cfg = load_config(args.config, args.set)
    config_dir = Path(args.config).parent
    if args.resume and Path(args.config).name == "config.yaml" and (config_dir / "checkpoints").is_dir() \
            and not any(s.split("=", 1)[0].strip() == "run.dir" for s in args.set):
        cfg.run.dir = str(config_dir)  # a run's own config.yaml resumes that run, wherever it was moved
    from sdfseg.training.pipeline import run

    run(cfg, resume=args.resume, progress=not args.no_progress, overwrite=args.overwrite)
    return 0


def console() -> None:
    """Console entry point."""
    run_cli(main)


if __name__ == "__main__":
    console()
