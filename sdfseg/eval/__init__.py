"""Evaluation: PQ^scene, mIoU, edge accuracy, instance F-score (Panoptic Lifting protocol).

All metrics take per-frame 2D integer maps (``[N, H, W]`` or a list of ``[H, W]``),
resize predictions to the GT size with nearest neighbour, and return fractions in [0, 1].
:func:`evaluate_maps` runs everything on a scene's test split; :mod:`.report` also reads
prediction folders and formats the terminal table and JSON record.
"""

from .edges import edge_accuracy, label_edges
from .panoptic import instance_fscore, panoptic_quality, retained_classes
from .report import (
    evaluate_arrays, evaluate_label_source, evaluate_maps, evaluate_prediction_dir, format_table, load_prediction_dir,
    pick_baseline, read_prediction_map, split_test_indices, write_metrics_json,
)
from .semantic import mean_iou, resize_nearest

__all__ = [
    "edge_accuracy", "evaluate_arrays", "evaluate_label_source", "evaluate_maps", "evaluate_prediction_dir",
    "format_table", "instance_fscore", "label_edges", "load_prediction_dir", "mean_iou", "panoptic_quality",
    "pick_baseline", "read_prediction_map", "resize_nearest", "retained_classes", "split_test_indices",
    "write_metrics_json",
]
