"""Train a hierarchical feature head on the frozen backbone of a trained run (head-only stage).

The new run directory OUT gets the source run's config with ``features.enabled=true`` and
the ``--set`` overrides, the source backbone and the new head, and answers tools/query.py
and tools/eval_hierarchy.py like a jointly trained run (docs/hierarchy.md). OUT is locked while
it is written; a run already in OUT is replaced only with --overwrite.

Examples:
  python tools/train_features.py runs/demo runs/demo_features
  python tools/train_features.py runs/demo_hierarchy runs/demo_l0 --set features.loss.decay=0
  python tools/train_features.py runs/demo_hierarchy runs/demo_um --set features.loss.kind=ultrametric
"""

from __future__ import annotations

import argparse

from sdfseg.cli.options import add_overwrite_option, add_progress_option, add_set_option
from sdfseg.errors import run_cli


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("source", help="trained run directory (its backbone is loaded and frozen)")
    ap.add_argument("out", help="new run directory for the backbone plus the new head")
    add_set_option(ap)
    add_overwrite_option(ap)
    add_progress_option(ap)
    args = ap.parse_args(argv)
    from sdfseg.methods.hierarchy.stage import train_feature_head

    stats = train_feature_head(args.source, args.out, args.set, progress=not args.no_progress,
                               overwrite=args.overwrite)
    losses = ", ".join(f"{k} {v:.4f}" for k, v in stats.items() if k != "seconds")
    print(f"feature head trained in {stats['seconds']:.0f} s ({losses}); run: {args.out}")
    return 0


def console() -> None:
    """Console entry point."""
    run_cli(main)


if __name__ == "__main__":
    console()
