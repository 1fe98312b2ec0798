"""Quality benchmark: train a config on the demo scene and on rooms of the independent scene family,
over seeds, and print one table (PQ^scene, SQ, RQ, mIoU, EA, mesh F-score, beside the noisy labels'
PQ^scene, mIoU and EA; mean and worst).

Tiers:
  full    the config as it is; demo + room0..room3, seeds 0 and 1 (10 runs)
  screen  1200 iterations; demo + room0, room1, seed 0 (3 runs): for trying ideas

Scenes are generated on first use under --data. Each run is tools/train.py with one thread;
--jobs of them run at once (default: one per core). Finished runs are reused and killed ones
resume, so the command can be repeated after an interruption. The table is written to
ROOT/TIER/table.md and table.json, each class's IoU over the runs (beside the noisy labels') to
ROOT/TIER/per_class.md; the runs' logs to ROOT/TIER/logs/.

Examples:
  python tools/bench_quality.py --tier screen
  python tools/bench_quality.py --tier full --root runs/bench
  python tools/bench_quality.py --tier screen --root runs/bench_fg --set loss.fg=0.3
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from sdfseg.cli.options import add_set_option
from sdfseg.errors import SdfsegError, run_cli


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tier", default="screen", help="full | screen (default screen)")
    ap.add_argument("--config", type=Path, default=Path("confs/demo.yaml"), help="config to train (default the demo's)")
    add_set_option(ap, help="overrides for every run (repeatable); a folder's runs must share them")
    ap.add_argument("--root", type=Path, default=Path("runs/bench"), help="folder of the runs and tables")
    ap.add_argument("--data", type=Path, default=Path("data/bench"), help="folder of the generated scenes")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="trainings at once, one thread each")
    ap.add_argument("--scenes", nargs="+", default=None, help="subset of the tier's scenes (demo, room<seed>)")
    ap.add_argument("--seeds", nargs="+", type=int, default=None, help="subset of the tier's seeds")
    args = ap.parse_args(argv)
    if args.jobs < 1:
        raise SdfsegError(f"--jobs: expected >= 1, got {args.jobs}")
    from sdfseg.apps.quality_bench import NOISY_PQ_BAND, format_table, run_benchmark
    from sdfseg.progress import format_duration

    r = run_benchmark(args.tier, args.config, args.root, args.data, args.set, args.jobs, args.scenes, args.seeds)
    print(format_table(r["rows"], r["summary"]))
    print(f"tier {args.tier}: {format_duration(r['seconds_this_call'])} for this call "
          f"({len(r['run_seconds'])} runs trained, {args.jobs} at a time); table in {args.root / args.tier}")
    if r["noisy_pq_out_of_band"]:
        print(f"warning: the noisy labels' PQ^scene is outside {NOISY_PQ_BAND} on {', '.join(r['noisy_pq_out_of_band'])}")
    return 0


def console() -> None:
    """Console entry point."""
    run_cli(main)


if __name__ == "__main__":
    console()
