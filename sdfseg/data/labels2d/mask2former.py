"""Mask2Former panoptic segmentation through detectron2 (optional; user config + weights).

Needs detectron2 and the Mask2Former project (its ``mask2former`` package importable)
and a panoptic config (``MODEL.MASK_FORMER.TEST.PANOPTIC_ON: True``) with matching
weights, e.g. the COCO panoptic Swin-L model Panoptic Lifting used. The panoptic
output becomes: instance map = thing segments numbered 1..K (stuff and void 0), a
MaskSet with every segment, and, when a class map is given (model category id ->
scene class id, e.g. COCO -> the reduced ScanNet classes), a semantic map
(unmapped categories -> 0, void).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np

from ...errors import SdfsegError
from ..masks import MaskSet
from . import Segmentation, relabel_consecutive

INSTALL_HINT = ("install detectron2 (pip install 'git+https://github.com/facebookresearch/detectron2.git') and "
                "clone https://github.com/facebookresearch/Mask2Former onto PYTHONPATH (its CUDA ops are optional "
                "for inference), then pass --config and --checkpoint")


def read_class_map(path: str | Path) -> dict[int, int]:
    """JSON object ``{"model_category_id": scene_class_id}`` -> dict of ints."""
    path = Path(path)
    try:
        raw = json.loads(path.read_text())
        out = {int(k): int(v) for k, v in raw.items()}
    except FileNotFoundError:
        raise SdfsegError(f"{path}: class map not found") from None
    except (json.JSONDecodeError, AttributeError, TypeError, ValueError) as exc:
        raise SdfsegError(f"{path}: expected a JSON object {{\"category_id\": scene_class_id}} ({exc!r})") from None
    if any(v < 0 for v in out.values()):
        raise SdfsegError(f"{path}: scene class ids must be >= 0")
    return out


def panoptic_to_segmentation(panoptic: np.ndarray, segments_info: list[dict],
                             class_map: Optional[dict[int, int]] = None) -> Segmentation:
    """detectron2 panoptic output -> :class:`Segmentation`.

    Args:
        panoptic: int ``[H, W]`` segment ids (0 = void).
        segments_info: one dict per segment with ``id``, ``isthing``, ``category_id`` (and optionally ``score``).
        class_map: model category id -> scene class id; None = no semantic map.
    """
    panoptic = np.asarray(panoptic)
    h, w = panoptic.shape
    instance = np.zeros((h, w), dtype=np.int32)
    semantic = np.zeros((h, w), dtype=np.int32) if class_map is not None else None
    masks, scores = [], []
    for seg in segments_info:
        m = panoptic == int(seg["id"])
        if not m.any():
            continue
        masks.append(m)
        scores.append(float(seg.get("score", 1.0)))
        if seg.get("isthing", False):
            instance[m] = int(seg["id"])
        if semantic is not None:
            semantic[m] = class_map.get(int(seg["category_id"]), 0)
    return Segmentation(instance=relabel_consecutive(instance), masks=MaskSet.from_masks(masks, h, w, scores=scores),
                        semantic=semantic)


@dataclass
class Mask2FormerConfig:
    config: str = ""
    """detectron2/Mask2Former YAML config (panoptic)."""
    checkpoint: str = ""
    """Model weights (.pkl / .pth)."""
    device: str = "auto"
    class_map: Optional[str] = None
    """Optional JSON mapping model category ids to scene class ids (enables semantic maps)."""
    extra: list = field(default_factory=list)
    """Extra ``KEY VALUE`` config overrides."""


def _import_detectron2():
    try:
        from detectron2.config import get_cfg
        from detectron2.engine import DefaultPredictor
        from detectron2.projects.deeplab import add_deeplab_config
    except ImportError as exc:
        raise SdfsegError(f"the mask2former segmenter needs detectron2 ({exc.name or exc} is missing): {INSTALL_HINT}") from None
    try:
        from mask2former import add_maskformer2_config
    except ImportError:
        raise SdfsegError(f"the mask2former segmenter needs the Mask2Former project's 'mask2former' package: {INSTALL_HINT}") from None
    return get_cfg, DefaultPredictor, add_deeplab_config, add_maskformer2_config


class Mask2FormerSegmenter:
    """Panoptic Mask2Former on one image; see the module docstring."""

    method = "mask2former"

    def __init__(self, config: Mask2FormerConfig) -> None:
        for key, value in (("--config", config.config), ("--checkpoint", config.checkpoint)):
            if not value or not Path(value).is_file():
                raise SdfsegError(f"{value or key}: Mask2Former {key[2:]} file not found (pass {key} PATH)")
        self.config = config
        self.class_map = read_class_map(config.class_map) if config.class_map else None
        self.outputs = ("instance", "masks", "semantic") if self.class_map is not None else ("instance", "masks")
        get_cfg, DefaultPredictor, add_deeplab_config, add_maskformer2_config = _import_detectron2()
        from .sam import pick_device

        cfg = get_cfg()
        add_deeplab_config(cfg)
        add_maskformer2_config(cfg)
        cfg.merge_from_file(config.config)
        cfg.merge_from_list(list(config.extra) + ["MODEL.WEIGHTS", str(config.checkpoint),
                                                  "MODEL.DEVICE", pick_device(config.device)])
        cfg.freeze()
        self.predictor = DefaultPredictor(cfg)

    def settings(self) -> dict:
        c = self.config
        return {"method": self.method, "config": Path(c.config).name, "checkpoint": Path(c.checkpoint).name,
                "class_map": self.class_map and {str(k): v for k, v in sorted(self.class_map.items())},
                "extra": list(c.extra)}

    def __call__(self, rgb: np.ndarray) -> Segmentation:
        out = self.predictor(np.ascontiguousarray(rgb[..., 2::-1]))  # DefaultPredictor takes BGR, converts itself
        if "panoptic_seg" not in out:
            raise SdfsegError(f"{self.config.config}: the model gives no panoptic output "
                              "(set MODEL.MASK_FORMER.TEST.PANOPTIC_ON True)")
        panoptic, info = out["panoptic_seg"]
        return panoptic_to_segmentation(panoptic.cpu().numpy(), info, self.class_map)
