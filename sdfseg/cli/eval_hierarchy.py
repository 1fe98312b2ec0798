"""Score hierarchical feature-head runs against a synthetic scene's GT part / object / group maps.

Examples:
  python tools/eval_hierarchy.py runs/demo_hierarchy
  python tools/eval_hierarchy.py runs/h_l0 runs/h_l05 runs/h_um --names "lambda 0" "lambda 0.5" ultrametric \\
      --json runs/hierarchy_table.json
"""

from __future__ import annotations

import argparse
from pathlib import Path

from sdfseg.errors import SdfsegError, run_cli

DESCRIPTION = """\
Evaluate the hierarchical feature head of one or more runs (trained on the same scene
with features.enabled=true) on the scene's test views, against its GT hierarchy
(synthetic scenes: gt_part/, rs_instance/ = objects, gt_group/):

  hierarchical mIoU  one click per GT part; IoU of score > t with the part / object / group
                     containing the click, at the best t; mean per level
  NC                 Normalized Covering per level: mean best IoU of any predicted mask with
                     each GT segment (feature maps: 4-neighbour graph cuts at 50 distances)
  VC                 View Consistency per level: a click's mask warped to a view ~10 degrees
                     away vs. the mask of the warped click there (co-visible pixels)

The first row is the baseline: the scene's raw 2D masks (masks_<source>/, default the runs'
features.mask_source) of the test frames. Values printed in percent; the JSON (default
RUN_DIR/hierarchy_metrics.json of the first run) holds fractions in [0, 1].
"""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dirs", type=Path, nargs="+", metavar="RUN_DIR", help="run directories with a feature head")
    p.add_argument("--names", nargs="+", default=None, help="row names (default: the run folder names)")
    p.add_argument("--json", type=Path, default=None, metavar="OUT", help="where to write the metrics JSON")
    p.add_argument("--mask-source", default=None, help="raw masks of the baseline row (default: the runs' source)")
    p.add_argument("--vc-samples", type=int, default=10, help="clicks per GT segment and view pair for VC")
    p.add_argument("--seed", type=int, default=0, help="seed of the query and VC sampling (default 0)")
    p.add_argument("--device", default=None, help="torch device (default: the runs' train.device)")
    p.add_argument("--ceiling", action="store_true",
                   help="add the geometry ceiling row: the exact GT hierarchy of the synthetic scene rendered "
                        "with the first run's weights (what a perfect head on that backbone could reach)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from sdfseg.eval.hierarchy_report import evaluate_runs, format_hierarchy_table
    from sdfseg.io import write_json_atomic
    from sdfseg.methods.hierarchy.run import load_feature_run

    names = args.names or [d.name for d in args.run_dirs]
    if len(names) != len(args.run_dirs):
        raise SdfsegError(f"--names: {len(names)} names for {len(args.run_dirs)} run directories")
    if args.vc_samples <= 0:
        raise SdfsegError(f"--vc-samples: expected a positive number, got {args.vc_samples}")
    runs = [load_feature_run(d, args.device) for d in args.run_dirs]
    result = evaluate_runs(runs, names, args.mask_source, args.vc_samples, args.seed, ceiling=args.ceiling)
    out = args.json if args.json is not None else args.run_dirs[0] / "hierarchy_metrics.json"
    print(format_hierarchy_table(result))
    write_json_atomic(out, result)
    print(f"wrote {out}")
    return 0


def console() -> None:
    """Console entry point."""
    run_cli(main)


if __name__ == "__main__":
    console()
