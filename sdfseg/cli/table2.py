"""Reproduce the paper's Table 2 (instance mode) on a scene: baselines and ClusteringSDF ablations.

Rows (each a full training run of CONFIG with overrides, in RUN_ROOT/<row>):
  oracle            ObjectSDF++ opacity loss on GT labels            (train.method=supervised train.oracle_labels=true)
  objectsdf_noisy   ObjectSDF++ opacity loss on the noisy labels     (train.method=supervised)
                    Both baselines train their opacity loss from step 0 (train.segmentation_start only
                    delays the clustering losses), as ObjectSDF++ does.
  clusteringsdf     the full method
  no_onehot / no_reg / no_fgbg   ClusteringSDF without that term
  codebook          Unified-Lift's object codebook on the same backbone (train.method=codebook)
The table (PQ^scene, SQ, RQ, mIoU, EA, and the noisy 2D labels as a row) is printed and
written to RUN_ROOT/table2.md and table2.json. Finished rows are reused (delete a row's
folder to re-run it).

Example:
  python tools/table2.py confs/demo.yaml --root runs/table2 --set train.iterations=1500
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from sdfseg.cli.options import add_set_option
from sdfseg.config import load_config
from sdfseg.errors import SdfsegError, run_cli

ROWS = {
    "oracle": ["train.method=supervised", "train.oracle_labels=true"],
    "objectsdf_noisy": ["train.method=supervised"],
    "clusteringsdf": [],
    "no_onehot": ["loss.onehot=0"],
    "no_reg": ["loss.reg=0"],
    "no_fgbg": ["loss.fg=0", "loss.bg=0"],
    "codebook": ["train.method=codebook"],
}


def _fmt(v) -> str:
    return "-" if v is None else f"{100 * v:.1f}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("config")
    ap.add_argument("--root", default="runs/table2", help="folder for the runs and the table")
    ap.add_argument("--rows", nargs="*", default=list(ROWS), help=f"subset of {', '.join(ROWS)}")
    add_set_option(ap, help="overrides for every row (repeatable)")
    args = ap.parse_args()
    unknown = [r for r in args.rows if r not in ROWS]
    if unknown:
        raise SdfsegError(f"--rows: unknown row(s) {', '.join(unknown)} (expected {', '.join(ROWS)})")
    from sdfseg.io import write_json_atomic, write_text_atomic
    from sdfseg.training.pipeline import run

    root = Path(args.root)
    results, baseline = {}, None
    for row in args.rows:
        run_dir = root / row
        mfile = run_dir / "metrics.json"
        if not mfile.exists():
            cfg = load_config(args.config, args.set + ROWS[row] + [f"run.dir={run_dir}", "render.export_mesh=false"])
            print(f"== {row}: {' '.join(ROWS[row]) or '(full method)'}")
            run(cfg, resume=(run_dir / "checkpoints" / "last.pt").exists(), progress=True)  # a killed row resumes
        m = json.loads(mfile.read_text())
        results[row] = {k: m.get(k) for k in ("pq", "sq", "rq", "miou", "ea")}
        baseline = baseline or m.get("baseline")
    lines = ["| method | PQ^scene | SQ | RQ | mIoU | EA |", "|---|---|---|---|---|---|"]
    if baseline:
        lines.append("| noisy 2D labels | " + " | ".join(_fmt(baseline.get(k)) for k in ("pq", "sq", "rq", "miou", "ea")) + " |")
    for row, r in results.items():
        lines.append(f"| {row} | " + " | ".join(_fmt(r[k]) for k in ("pq", "sq", "rq", "miou", "ea")) + " |")
    table = "\n".join(lines) + "\n"
    print(table)
    write_text_atomic(root / "table2.md", table)
    write_json_atomic(root / "table2.json", {"rows": results, "noisy_labels": baseline, "overrides": args.set})
    return 0


def console() -> None:
    """Console entry point."""
    run_cli(main)


if __name__ == "__main__":
    console()
