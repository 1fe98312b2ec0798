"""Make per-frame 2D labels for a scene with SAM, Mask2Former or a weight-free classical segmenter.

The labels are written INTO the scene folder as a named label source that every
layout reader picks up (see the README, "Data layouts"):

    <name>_instance/<frame>.png   flat instance map (ids mean nothing across frames)
    masks_<name>/<frame>.npz      all overlapping / multi-granular masks (MaskSet)
    <name>_semantics/<frame>.png  semantic map (mask2former with --class-map only)

Train on them with ``--set data.label_source=<name>``. Finished frames are skipped,
so an interrupted run resumes; every file is written atomically.

Examples:
    python tools/segment2d.py data/scene0050_02 --method classical
    python tools/segment2d.py data/room0 --method sam --checkpoint weights/sam_vit_h_4b8939.pth
    python tools/segment2d.py data/room0 --method mask2former --config m2f_swinL_panoptic.yaml \\
        --checkpoint model_final.pkl --class-map coco_to_scannet_reduced.json --output-name m2f_mine
"""

from __future__ import annotations

import argparse
from pathlib import Path

from sdfseg.data import ReadOptions, load_scene
from sdfseg.data.labels2d import METHODS, make_segmenter
from sdfseg.data.labels2d.writer import segment_scene
from sdfseg.errors import SdfsegError, run_cli


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("scene", help="scene folder (any layout sdfseg reads)")
    p.add_argument("--method", required=True, choices=METHODS, help="segmenter")
    p.add_argument("--layout", default="auto", help="scene layout (default: auto-detect)")
    p.add_argument("--output-name", default=None, help="label source name (default: the method name)")
    p.add_argument("--frames", default="all", choices=("train", "test", "all"), help="which frames to segment")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda[:i] (sam, mask2former)")
    g = p.add_argument_group("sam")
    g.add_argument("--checkpoint", default="", help="local weights file (sam: e.g. sam_vit_h_4b8939.pth; mask2former)")
    g.add_argument("--model-type", default="vit_h", choices=("vit_h", "vit_l", "vit_b"), help="SAM backbone of the checkpoint")
    g.add_argument("--points-per-side", type=int, default=32, help="SAM prompt grid (points per image side)")
    g.add_argument("--pred-iou-thresh", type=float, default=0.88, help="SAM: keep masks with predicted IoU above this")
    g.add_argument("--stability-score-thresh", type=float, default=0.95, help="SAM: keep masks with stability above this")
    g = p.add_argument_group("mask2former")
    g.add_argument("--config", default="", help="detectron2/Mask2Former panoptic YAML config")
    g.add_argument("--class-map", default=None, help="JSON {model_category_id: scene_class_id}; enables semantic maps")
    g = p.add_argument_group("classical")
    g.add_argument("--scale", type=float, default=100.0, help="Felzenszwalb scale of the finest partition")
    g.add_argument("--levels", default="128,64,32,16,8,4,2", help="region counts of the nested levels, fine to coarse")
    g.add_argument("--instance-segments", type=int, default=32, help="instance map = the level closest to this many regions")
    return p.parse_args(argv)


def segmenter_kwargs(args: argparse.Namespace) -> dict:
    if args.method == "sam":
        return dict(checkpoint=args.checkpoint, model_type=args.model_type, points_per_side=args.points_per_side,
                    pred_iou_thresh=args.pred_iou_thresh, stability_score_thresh=args.stability_score_thresh,
                    device=args.device)
    if args.method == "mask2former":
        return dict(config=args.config, checkpoint=args.checkpoint, device=args.device, class_map=args.class_map)
    try:
        levels = tuple(int(v) for v in args.levels.split(","))
    except ValueError:
        raise SdfsegError(f"--levels: expected comma-separated integers, got '{args.levels}'") from None
    return dict(scale=args.scale, levels=levels, instance_segments=args.instance_segments)


def main(argv=None) -> int:
    args = parse_args(argv)
    if not Path(args.scene).is_dir():
        raise SdfsegError(f"{args.scene}: scene folder not found")
    segmenter = make_segmenter(args.method, **segmenter_kwargs(args))
    scene = load_scene(args.scene, args.layout, ReadOptions(crop="no_crop"))  # images only: K is not used
    source = args.output_name or args.method
    counts = segment_scene(scene, segmenter, source, frames=args.frames)
    print(f"{scene.path}: wrote {counts['written']} frames, skipped {counts['skipped']} already done "
          f"(label source '{source}'; train with --set data.label_source={source})")
    return 0


def console() -> None:
    """Console entry point."""
    run_cli(main)


if __name__ == "__main__":
    console()
