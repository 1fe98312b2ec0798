"""Prompt an object of a trained run (SANeRF-HQ): clicks in -> its mask in every test view and its own mesh.

Examples:
  python tools/prompt.py runs/demo --click 0002 80 60
  python tools/prompt.py runs/demo --click 0002 80 60 --click 0010 40 70 --negative 0002 95 60
  python tools/prompt.py runs/demo --point 0.4 1.2 0.3 --segmenter classical
  python tools/prompt.py runs/demo --gt-objects          # one click per GT object; a table of the scores
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from sdfseg.errors import SdfsegError, run_cli

DESCRIPTION = """\
Lift a prompt to 3D and train an object field for it on a finished run (any method).

--click FRAME U V: pixel column U and row V of a training or test frame; the click is lifted to 3D
with the run's rendered depth; --spread N adds N points on the object's visible side from the
segmenter's answer in the clicked frame (a single point is occluded in most other views, but a wrong
answer there misleads every view). --point X Y Z: a 3D point in world coordinates. --negative FRAME U V: a click on something that is not the object. The prompt is projected into every training view and
kept where the run's rendered depth agrees (it is visible there); a prompted 2D segmenter answers it
in those views (--segmenter: sam with --sam-checkpoint; sim on synthetic scenes, simulated from the
GT instance maps; classical without weights; auto picks the first that applies). An object field is
then trained on those masks with the run's frozen geometry (cross-entropy on rays drawn from per-view
error maps, and the ray-pair RGB term).

Written to OUT (default RUN/prompts/NAME): masks/<test frame>.png, object.ply (world coordinates,
watertight), object_field.pt, prompt.json and, on scenes with GT, metrics.json: IoU and pixel accuracy
over the test views of the field, of the raw per-view masks and of the run's own instance of the
object, and the mesh's F-score at 5 cm against the GT mesh.

--gt-objects (scenes with GT maps of every frame): prompt each GT object in turn with one click at its
most interior pixel in the training view where it is largest, and print the table of the scores (mean
over the objects last); written to RUN/prompts/gt_objects.md and .json.
"""


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dir", type=Path, help="run directory (config.yaml + checkpoints/last.pt)")
    p.add_argument("--click", nargs=3, action="append", default=[], metavar=("FRAME", "U", "V"),
                   help="positive click: frame name, pixel column, pixel row (repeatable)")
    p.add_argument("--negative", nargs=3, action="append", default=[], metavar=("FRAME", "U", "V"),
                   help="negative click (repeatable)")
    p.add_argument("--point", type=float, nargs=3, action="append", default=[], metavar=("X", "Y", "Z"),
                   help="positive 3D point in world coordinates (repeatable)")
    p.add_argument("--gt-objects", action="store_true", help="prompt every GT object in turn and score them")
    p.add_argument("--spread", type=int, default=0, metavar="N",
                   help="prompt points added per click from the segmenter's answer in the clicked view (default 0: "
                        "the clicks only; see docs/methods.md)")
    p.add_argument("--segmenter", default="auto", help="auto | sam | sim | classical (default auto)")
    p.add_argument("--sam-checkpoint", default=None, help="local segment-anything checkpoint (.pth)")
    p.add_argument("--iterations", type=int, default=400, help="object field steps (default 400)")
    p.add_argument("--mesh-resolution", type=int, default=128, help="grid of the object's mesh (default 128)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--name", default="prompt", help="name of the output folder under RUN/prompts (default prompt)")
    p.add_argument("--out", type=Path, default=None, help="output folder (default RUN/prompts/NAME)")
    p.add_argument("--device", default=None, help="cpu | cuda (default: the run's)")
    p.add_argument("--no-progress", action="store_true")
    return p.parse_args(argv)


def _click(scene, spec, option: str) -> tuple[int, float, float]:
    from sdfseg.methods.hierarchy.run import frame_index

    name, u, v = spec
    try:
        return frame_index(scene, name, option), float(u), float(v)
    except ValueError:
        raise SdfsegError(f"{option} {name} {u} {v}: U and V must be numbers (pixel column and row)") from None


def _fmt(m: dict, key: str) -> str:
    r = m.get(key)
    return "-" if not r else f"{100 * r['miou']:.1f} / {100 * r['accuracy']:.1f}"


def main(argv=None) -> int:
    args = parse_args(argv)
    from sdfseg.methods.prompt.field import (
        Prompt, PromptConfig, expand_clicks, gt_object_clicks, lift_clicks, make_prompt_segmenter, run_prompt,
    )
    from sdfseg.core.carve import map_carve
    from sdfseg.runs import open_run

    if not (args.click or args.point or args.gt_objects):
        raise SdfsegError("give a prompt: --click FRAME U V, --point X Y Z or --gt-objects")
    if args.iterations < 1:
        raise SdfsegError(f"--iterations: expected >= 1, got {args.iterations}")
    run = open_run(args.run_dir, args.device, gt_frames="all")
    r = run.cfg.render
    # the test views' renderer, density and depth carve, as the run rendered them
    run.model.use_renderer(r.renderer, r.grid_resolution, r.surface_samples, r.beta, map_carve(run.model, run.scene, r))
    scene = run.scene
    if args.mesh_resolution < 8:
        raise SdfsegError(f"--mesh-resolution: expected >= 8, got {args.mesh_resolution}")
    cfg = PromptConfig(iterations=args.iterations, seed=args.seed, mesh_resolution=args.mesh_resolution)
    segmenter = make_prompt_segmenter(args.segmenter, scene, args.sam_checkpoint, args.seed)
    progress = not args.no_progress
    if args.gt_objects:
        rows = []
        for obj, i, u, v in gt_object_clicks(scene):
            t0 = time.time()
            name = scene.frame_names[i]
            print(f"== object {obj}: click {name} {u} {v}")
            positive = np.concatenate([lift_clicks(run, [(i, u, v)]),
                                       expand_clicks(run, segmenter, [(i, u, v)], [], args.spread, args.seed)])
            prompt = Prompt(positive, clicks=[(name, u, v, True)])
            m = run_prompt(run, prompt, segmenter, cfg, args.run_dir / "prompts" / f"gt_{obj:03d}", progress,
                           target=obj)
            cls = int(np.bincount(np.asarray(scene.gt.semantic[i])[np.asarray(scene.gt.instance[i]) == obj]).argmax())
            rows.append({"object": obj, "class": scene.classes.name(cls), "click": [name, u, v],
                         "seconds": time.time() - t0, **m})
        lines = ["| object | class | field IoU / acc | raw 2D masks | run's instance | mesh F@5cm |",
                 "|---|---|---|---|---|---|"]
        for r in rows:
            if "note" in r:
                lines.append(f"| {r['object']} | {r['class']} | {r['note']} | | | |")
                continue
            f = r.get("mesh", {}).get("fscore")
            lines.append(f"| {r['object']} | {r['class']} | {_fmt(r, 'field')} | {_fmt(r, 'raw_masks')} | "
                         f"{_fmt(r, 'run_instance')} | {'-' if f is None else f'{f:.3f}'} |")
        mean = {k: {q: float(np.mean([r[k][q] for r in rows if k in r])) for q in ("miou", "accuracy")}
                for k in ("field", "raw_masks", "run_instance") if any(k in r for r in rows)}
        fs = [r["mesh"]["fscore"] for r in rows if "mesh" in r and "note" not in r]
        lines.append(f"| **mean** | | {_fmt(mean, 'field')} | {_fmt(mean, 'raw_masks')} | "
                     f"{_fmt(mean, 'run_instance')} | {'-' if not fs else f'{np.mean(fs):.3f}'} |")
        table = "\n".join(lines) + "\n"
        print(f"segmenter: {segmenter.name}; values in % (IoU / pixel accuracy over the test views)")
        print(table)
        from sdfseg.io import write_json_atomic, write_text_atomic

        write_text_atomic(args.run_dir / "prompts" / "gt_objects.md", table)
        write_json_atomic(args.run_dir / "prompts" / "gt_objects.json", {"segmenter": segmenter.name, "rows": rows,
                                                                         "mean": mean})
        return 0
    clicks = [_click(scene, c, "--click") for c in args.click]
    negs = [_click(scene, c, "--negative") for c in args.negative]
    positive = lift_clicks(run, clicks)
    if args.spread > 0 and clicks:
        positive = np.concatenate([positive, expand_clicks(run, segmenter, clicks, negs, args.spread, args.seed)])
    if args.point:
        positive = np.concatenate([positive, scene.normalization.to_normalized(np.asarray(args.point, float))])
    prompt = Prompt(positive, lift_clicks(run, negs) if negs else np.zeros((0, 3)),
                    clicks=[(scene.frame_names[i], u, v, True) for i, u, v in clicks]
                    + [(scene.frame_names[i], u, v, False) for i, u, v in negs])
    out = args.out or args.run_dir / "prompts" / args.name
    m = run_prompt(run, prompt, segmenter, cfg, out, progress)
    print(f"wrote {out} (segmenter {segmenter.name})")
    if m:
        print(json.dumps({k: m[k] for k in ("gt_object", "field", "raw_masks", "run_instance", "mesh") if k in m}))
    return 0


def console() -> None:
    """Console entry point."""
    run_cli(main)


if __name__ == "__main__":
    console()
