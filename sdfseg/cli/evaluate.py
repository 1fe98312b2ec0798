"""Evaluate predicted label maps of a scene's test frames (PQ^scene, mIoU, edge accuracy, F-score).

Usage: python tools/evaluate.py SCENE_DIR PRED_DIR [--json OUT] [--layout auto]
                                [--baseline-source m2f] [--no-baseline]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from sdfseg.data import ReadOptions, load_scene
from sdfseg.errors import run_cli
from sdfseg.eval import evaluate_prediction_dir, format_table, pick_baseline, write_metrics_json

DESCRIPTION = """\
Score predicted semantic and instance maps against a scene's ground truth on its test
split, with the Panoptic Lifting protocol: PQ^scene (instance ids pooled over all test
frames, so an object must keep one id in every view), SQ, RQ, mIoU, ClusteringSDF's edge
accuracy EA, and a Hungarian-matched instance F-score.

PRED_DIR must hold, for every test frame <frame> of the scene:
  PRED_DIR/semantic/<frame>.png   semantic class ids (0 = void)
  PRED_DIR/instance/<frame>.png   instance ids (0 = none; consistent across frames)
written with sdfseg.io.save_label_png (16-bit, or RGBA int32 for ids >= 65536).
Maps of another size are resized with nearest neighbour.

The table shows the prediction and, as the "do nothing" baseline, the scene's noisy 2D
labels (default: the 'm2f' source when the scene has it). Values in the table are
percent; the JSON record (default PRED_DIR/metrics.json) holds fractions in [0, 1].
"""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("scene_dir", type=Path, help="scene folder (any supported layout)")
    p.add_argument("pred_dir", type=Path, help="folder with semantic/ and instance/ label PNGs per test frame")
    p.add_argument("--json", type=Path, default=None, metavar="OUT",
                   help="where to write the metrics JSON (default: PRED_DIR/metrics.json)")
    p.add_argument("--layout", default="auto", help="scene layout name, or 'auto' to detect it (default: auto)")
    p.add_argument("--baseline-source", default=None, metavar="NAME",
                   help="2D label source scored as the baseline row (default: 'm2f' if the scene has it)")
    p.add_argument("--no-baseline", action="store_true", help="do not score the scene's 2D labels")
    p.add_argument("--no-per-class", action="store_true", help="print only the summary rows")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    scene = load_scene(args.scene_dir, args.layout, ReadOptions(crop="no_crop"))  # label maps only: K is not used
    baseline = pick_baseline(scene, args.baseline_source, args.no_baseline)
    result = evaluate_prediction_dir(scene, args.pred_dir, baseline=baseline, progress=True)
    out = args.json if args.json is not None else args.pred_dir / "metrics.json"
    print(format_table(result, per_class=not args.no_per_class))
    write_metrics_json(out, result)
    print(f"wrote {out}")
    return 0


def console() -> None:
    """Console entry point."""
    run_cli(main)


if __name__ == "__main__":
    console()
