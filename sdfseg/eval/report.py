"""Scene evaluation: prediction folders, all metrics on the test split, terminal table, JSON.

A prediction folder holds one label PNG per test frame::

    PRED_DIR/semantic/<frame>.png   semantic class ids (0 = void)
    PRED_DIR/instance/<frame>.png   instance ids, pooled over frames (0 = no instance)

Writers should use :func:`sdfseg.io.save_label_png` (16-bit greyscale, or RGBA holding
int32 for ids >= 65536); any integer PNG that :func:`sdfseg.io.read_label_png` reads is
accepted, but 8-bit files silently wrap ids above 255 on the writer's side. Maps of
another size than the GT are resized with nearest neighbour; a different aspect ratio is
an error, as are semantic ids outside ``0 .. num_classes-1`` and negative instance ids.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from ..data.scene import ClassInfo, Scene
from ..errors import SdfsegError
from ..io import read_label_png, write_json_atomic
from .edges import edge_accuracy
from .panoptic import instance_fscore, panoptic_quality
from .semantic import Frames, as_frames, mean_iou, resize_nearest
from .reconstruction import view_reconstruction
from ..progress import progress_iter

ASPECT_TOLERANCE = 0.02
"""Relative aspect-ratio difference accepted between a prediction map and the GT."""


def split_test_indices(scene: Scene) -> np.ndarray:
    """Frame indices int64 ``[Nte]`` of the scene's test split; an error when it is empty."""
    idx = np.asarray(scene.split.get("test", []), dtype=np.int64).reshape(-1)
    if idx.size == 0:
        raise SdfsegError(f"{scene.path}: the scene's test split is empty (nothing to evaluate)")
    return idx


def _gt_test_maps(scene: Scene) -> tuple[np.ndarray, np.ndarray]:
    """GT semantic and instance maps of the test frames, int ``[Nte, H, W]`` each."""
    gt = scene.gt
    if gt is None or gt.semantic is None or gt.instance is None:
        raise SdfsegError(f"{scene.path}: the scene has no ground-truth semantic and instance maps")
    idx = split_test_indices(scene)
    return gt.semantic[idx], gt.instance[idx]


def evaluate_arrays(gt_sem: Frames, gt_inst: Frames, pred_sem: Frames, pred_inst: Frames,
                    classes: ClassInfo) -> dict:
    """All metrics on aligned frames ``[N, H, W]`` (predictions may be smaller/larger: resized).

    Returns the PQ^scene fields of :func:`panoptic_quality` plus ``miou``, ``ea``,
    ``fscore``, ``matched_miou``, ``instance`` (the full F-score record), ``num_frames``
    and ``per_class``: one row per class retained by PQ or mIoU with ``pq sq rq tp fp fn``
    (None when not a PQ class) and ``iou`` (None when skipped by mIoU).
    """
    pq = panoptic_quality(gt_sem, gt_inst, pred_sem, pred_inst, classes)
    sem = mean_iou(gt_sem, pred_sem, classes.num_classes, classes.names)
    inst = instance_fscore(gt_sem, gt_inst, pred_sem, pred_inst, classes)
    ea = edge_accuracy(gt_inst, pred_inst)
    out = {k: v for k, v in pq.items() if k != "per_class"}
    out.update(miou=sem["miou"], ea=ea, fscore=inst["fscore"], matched_miou=inst["matched_miou"],
               instance=inst, num_frames=len(as_frames(gt_sem, "gt_sem")))
    out["per_class"] = _merge_rows(pq["per_class"], sem["per_class"], classes)
    return out


def _merge_rows(pq_rows: list[dict], iou_rows: list[dict], classes: ClassInfo) -> list[dict]:
    by_class = {r["class"]: r for r in pq_rows}
    iou = {r["class"]: r["iou"] for r in iou_rows if not r["skipped"]}
    rows = []
    for c in sorted(set(by_class) | set(iou)):
        r = by_class.get(c, {})
        rows.append({"class": c, "name": classes.name(c), "thing": classes.is_thing(c),
                     **{k: r.get(k) for k in ("pq", "sq", "rq", "tp", "fp", "fn")}, "iou": iou.get(c)})
    return rows


def _select_test(maps: Frames, scene: Scene, idx: np.ndarray, what: str) -> list[np.ndarray]:
    frames = as_frames(maps, what)
    if len(frames) == len(idx):
        return frames
    if len(frames) == scene.num_frames:
        return [frames[i] for i in idx]
    raise SdfsegError(f"{what}: got {len(frames)} maps; expected one per test frame ({len(idx)}) "
                      f"or one per scene frame ({scene.num_frames})")


def evaluate_maps(scene: Scene, pred_sem: Frames, pred_inst: Frames) -> dict:
    """Evaluate predicted maps on ``scene.split["test"]`` against ``scene.gt``.

    ``pred_sem`` / ``pred_inst`` hold one map per test frame (in split order) or one per
    scene frame (the test frames are picked); see :func:`evaluate_arrays` for the result.
    """
    gt_sem, gt_inst = _gt_test_maps(scene)
    idx = split_test_indices(scene)
    ps = _select_test(pred_sem, scene, idx, "pred_sem")
    pi = _select_test(pred_inst, scene, idx, "pred_inst")
    return evaluate_arrays(gt_sem, gt_inst, ps, pi, scene.classes)


def evaluate_label_source(scene: Scene, name: str) -> dict:
    """Evaluate the 2D label source ``scene.labels[name]`` (e.g. noisy ``m2f``) on the test frames.

    This is the "do nothing" baseline row: per-frame labels taken as they are, with ids
    that need not agree across views.
    """
    src = scene.label_source(name)
    if src.semantic is None or src.instance is None:
        raise SdfsegError(f"{scene.path}: label source '{name}' lacks semantic or instance maps; "
                          "it cannot be evaluated as a baseline")
    return evaluate_maps(scene, src.semantic, src.instance)


def _check_size(path: Path, shape: tuple[int, int], hw: tuple[int, int]) -> None:
    h, w = shape
    H, W = hw
    if min(h, w) == 0 or abs((h / w) / (H / W) - 1.0) > ASPECT_TOLERANCE:
        raise SdfsegError(f"{path}: size {w}x{h} has another aspect ratio than the GT ({W}x{H})")


def read_prediction_map(path: Path, hw: tuple[int, int], num_classes: Optional[int] = None) -> np.ndarray:
    """Read one prediction label PNG and bring it to the GT size ``hw``: int32 ``[H, W]``.

    ``num_classes`` given: a semantic map, ids must lie in ``0 .. num_classes-1``;
    otherwise an instance map, ids must be >= 0.
    """
    if not path.is_file():
        raise SdfsegError(f"{path}: missing prediction file (expected one label PNG per test frame)")
    arr = read_label_png(path)
    if arr.shape != tuple(hw):
        _check_size(path, arr.shape, hw)
        arr = resize_nearest(arr, hw)
    if arr.size and arr.min() < 0:
        raise SdfsegError(f"{path}: negative label id {int(arr.min())} (ids must be >= 0)")
    if num_classes is not None and arr.size and arr.max() >= num_classes:
        raise SdfsegError(f"{path}: unknown semantic class {int(arr.max())} "
                          f"(expected 0 .. {num_classes - 1})")
    return arr


def load_prediction_dir(pred_dir: str | Path, scene: Scene, progress: bool = False
                        ) -> tuple[np.ndarray, np.ndarray]:
    """Read ``PRED_DIR/{semantic,instance}/<frame>.png`` for every test frame.

    Returns semantic and instance maps int32 ``[Nte, H, W]`` at the GT size, in test-split order.
    """
    pred_dir = Path(pred_dir)
    if not pred_dir.is_dir():
        raise SdfsegError(f"{pred_dir}: prediction folder not found")
    gt_sem, _ = _gt_test_maps(scene)
    idx = split_test_indices(scene)
    hw = tuple(gt_sem.shape[1:3])
    sems = np.zeros((len(idx),) + hw, dtype=np.int32)
    insts = np.zeros_like(sems)
    for k, i in enumerate(progress_iter(idx, "reading predictions", unit="frame") if progress else idx):
        frame = scene.frame_names[int(i)]
        sems[k] = read_prediction_map(pred_dir / "semantic" / f"{frame}.png", hw, scene.classes.num_classes)
        insts[k] = read_prediction_map(pred_dir / "instance" / f"{frame}.png", hw)
    return sems, insts


def evaluate_prediction_dir(scene: Scene, pred_dir: str | Path, baseline: Optional[str] = None,
                            progress: bool = False) -> dict:
    """Metrics of a prediction folder, plus the baseline row of label source ``baseline`` (None: none).

    Returns the :func:`evaluate_maps` record with ``baseline`` (same structure or None),
    ``baseline_source``, ``scene``, ``pred_dir`` and ``reconstruction`` (test-view PSNR and depth error,
    :func:`~sdfseg.eval.reconstruction.view_reconstruction`; None without rendered colours) added.
    """
    idx = split_test_indices(scene)
    sem, inst = load_prediction_dir(pred_dir, scene, progress=progress)
    result = evaluate_maps(scene, sem, inst)
    result["reconstruction"] = view_reconstruction(scene, pred_dir, idx)
    result["baseline_source"] = baseline
    result["baseline"] = evaluate_label_source(scene, baseline) if baseline else None
    result["scene"] = str(scene.path)
    result["pred_dir"] = str(pred_dir)
    return result


def write_metrics_json(path: str | Path, result: dict) -> None:
    """Write the evaluation record as JSON atomically (fractions in [0, 1], null when undefined)."""
    write_json_atomic(path, result)


def _pct(v: Optional[float]) -> str:
    return "-" if v is None else f"{100.0 * v:.1f}"


def format_table(result: dict, per_class: bool = True) -> str:
    """Readable summary: one row per method (prediction, baseline) and per-class rows (percent)."""
    cols = ("pq", "sq", "rq", "miou", "ea", "fscore", "pq_things", "pq_stuff")
    head = f"{'':<22}" + "".join(f"{c:>8}" for c in ("PQ", "SQ", "RQ", "mIoU", "EA", "F1", "PQth", "PQst"))
    lines = [f"{result.get('num_frames', 0)} test frames (values in %)", head]
    rows: list[tuple[str, dict]] = [("prediction", result)]
    if result.get("baseline"):
        rows.append((f"baseline ({result.get('baseline_source')})", result["baseline"]))
    for label, r in rows:
        lines.append(f"{label:<22}" + "".join(f"{_pct(r.get(c)):>8}" for c in cols))
    rec = result.get("reconstruction")
    if rec:
        line = f"test views: PSNR {rec['psnr']:.2f} dB"
        if rec.get("depth_median_m") is not None:
            line += (f"; depth error median {100 * rec['depth_median_m']:.1f} cm, > 5 cm on "
                     f"{_pct(rec['depth_over_5cm'])}% and > 20 cm on {_pct(rec['depth_over_20cm'])}% of the pixels")
        lines.append(line)
    if per_class and result.get("per_class"):
        lines += ["", _class_header()] + [_class_line(r) for r in result["per_class"]]
    if result.get("dropped_classes"):
        lines.append(f"classes dropped by the 0.5% filter: {', '.join(map(str, result['dropped_classes']))}")
    return "\n".join(lines)


def _class_header() -> str:
    return f"{'per class (prediction)':<28}" + "".join(
        f"{c:>7}" for c in ("PQ", "SQ", "RQ", "TP", "FP", "FN", "IoU"))


def _class_line(r: dict) -> str:
    kind = "void" if r["class"] == 0 else ("thing" if r["thing"] else "stuff")
    label = f"{r['class']:>3} {r['name'][:16]:<16} {kind:<6}"
    counts = "".join(f"{'-' if r[k] is None else r[k]:>7}" for k in ("tp", "fp", "fn"))
    return (f"{label:<28}" + "".join(f"{_pct(r[k]):>7}" for k in ("pq", "sq", "rq"))
            + counts + f"{_pct(r['iou']):>7}")


def pick_baseline(scene: Scene, requested: Optional[str], disabled: bool,
                  default: str = "m2f") -> Optional[str]:
    """The label source for the baseline row: ``requested`` (must exist), else ``default`` if present."""
    if disabled:
        return None
    if requested:
        scene.label_source(requested)  # a one-line error when absent
        return requested
    src = scene.labels.get(default)
    return default if src is not None and src.semantic is not None and src.instance is not None else None


__all__: Sequence[str] = (
    "evaluate_arrays", "evaluate_label_source", "evaluate_maps", "evaluate_prediction_dir",
    "format_table", "load_prediction_dir", "pick_baseline", "read_prediction_map", "split_test_indices",
    "write_metrics_json",
)
