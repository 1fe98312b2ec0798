"""SAM "everything" masks through the ``segment-anything`` package (local checkpoint only).

``SamAutomaticMaskGenerator`` prompts SAM with a regular point grid and keeps every
mask that passes the predicted-IoU and stability thresholds; all of them are kept as
a :class:`~sdfseg.data.masks.MaskSet` (scores = predicted IoU) for the hierarchical
head, and flattened into an instance map by painting from the largest mask to the
smallest.

segment-anything imports two small pieces of torchvision (``ops.boxes.batched_nms``,
``box_area`` and ``transforms.functional.resize``, ``to_pil_image``). torchvision
wheels must match the installed torch build exactly (the PyPI wheels are CUDA builds
that cannot load against a CPU torch). When torchvision cannot be imported, the
package is imported with equivalent implementations of those four functions
(below) placed in ``sys.modules`` for the duration of the import only.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import numpy as np
from PIL import Image

from ...errors import SdfsegError
from ..masks import MaskSet
from . import Segmentation, paint_masks

INSTALL_HINT = "install it with: pip install -e .[sam]  (or: pip install segment-anything)"
MODEL_TYPES = ("vit_h", "vit_l", "vit_b")


def batched_nms(boxes, scores, idxs, iou_threshold: float):
    """Greedy non-maximum suppression per category.

    Args:
        boxes: float ``[N, 4]`` (x0, y0, x1, y1).
        scores: float ``[N]``.
        idxs: int ``[N]`` category of each box; boxes of different categories never suppress each other.
        iou_threshold: a box is dropped when its IoU with a kept, higher-scoring box exceeds this.
    Returns:
        int64 ``[K]`` indices of the kept boxes, by decreasing score.
    """
    import torch

    if boxes.numel() == 0:
        return torch.zeros(0, dtype=torch.int64, device=boxes.device)
    b = boxes.double()
    shift = (b.max() - b.min() + 1.0) * idxs.to(b)  # separate the categories in space
    b = b + shift[:, None]
    order = torch.sort(scores, descending=True, stable=True).indices
    b = b[order]
    area = (b[:, 2] - b[:, 0]).clamp(min=0) * (b[:, 3] - b[:, 1]).clamp(min=0)
    lt = torch.maximum(b[:, None, :2], b[None, :, :2])
    rb = torch.minimum(b[:, None, 2:], b[None, :, 2:])
    inter = (rb - lt).clamp(min=0).prod(-1)
    # the greedy pass is sequential: run it on the CPU (one transfer), whatever device the boxes are on
    iou = (inter / (area[:, None] + area[None, :] - inter).clamp(min=1e-12)).cpu()
    removed = torch.zeros(len(order), dtype=torch.bool)
    keep = []
    for i in range(len(order)):
        if removed[i]:
            continue
        keep.append(i)
        removed |= iou[i] > iou_threshold
    return order[torch.tensor(keep, dtype=torch.int64, device=order.device)]


def box_area(boxes):
    """Areas ``[N]`` of boxes ``[N, 4]`` (x0, y0, x1, y1)."""
    return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])


def to_pil_image(image: np.ndarray) -> Image.Image:
    """uint8 ``[H, W, 3]`` -> PIL image."""
    return Image.fromarray(np.ascontiguousarray(image))


def resize(image: Image.Image, size) -> Image.Image:
    """Bilinear resize of a PIL image to ``size`` = (height, width)."""
    h, w = (int(v) for v in size)
    return image.resize((w, h), Image.BILINEAR)


def _torchvision_stand_in() -> dict[str, ModuleType]:
    mods = {name: ModuleType(name) for name in ("torchvision", "torchvision.ops", "torchvision.ops.boxes",
                                                "torchvision.transforms", "torchvision.transforms.functional")}
    mods["torchvision.ops.boxes"].batched_nms = batched_nms
    mods["torchvision.ops.boxes"].box_area = box_area
    mods["torchvision.transforms.functional"].resize = resize
    mods["torchvision.transforms.functional"].to_pil_image = to_pil_image
    mods["torchvision"].ops = mods["torchvision.ops"]
    mods["torchvision"].transforms = mods["torchvision.transforms"]
    mods["torchvision.ops"].boxes = mods["torchvision.ops.boxes"]
    mods["torchvision.transforms"].functional = mods["torchvision.transforms.functional"]
    return mods


def _torchvision_usable() -> bool:
    try:
        importlib.import_module("torchvision.ops.boxes")
        importlib.import_module("torchvision.transforms.functional")
        return True
    except Exception:  # noqa: BLE001 - a mismatched build raises RuntimeError/OSError, not only ImportError
        return False


def sam_installed() -> bool:
    return importlib.util.find_spec("segment_anything") is not None


def import_segment_anything() -> ModuleType:
    """The ``segment_anything`` package; a one-line error says how to install it when missing."""
    if "segment_anything" in sys.modules:
        return sys.modules["segment_anything"]
    if not sam_installed():
        raise SdfsegError(f"the SAM segmenter needs the segment-anything package, which is not installed: {INSTALL_HINT}")
    if _torchvision_usable():
        return importlib.import_module("segment_anything")
    stand_in = _torchvision_stand_in()
    saved = {k: sys.modules.get(k) for k in stand_in}
    sys.modules.update(stand_in)
    try:
        return importlib.import_module("segment_anything")
    finally:
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v


def pick_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise SdfsegError(f"--device: '{device}' requested but CUDA is not available")
    return device


def load_sam(checkpoint: str | Path, model_type: str = "vit_h", device: str = "auto"):
    """SAM model of ``model_type`` with the weights of the local ``checkpoint`` file, in eval mode."""
    import torch

    if model_type not in MODEL_TYPES:
        raise SdfsegError(f"--model-type: '{model_type}' is not one of {', '.join(MODEL_TYPES)}")
    ckpt = Path(checkpoint) if checkpoint else None
    if ckpt is None or not ckpt.is_file():
        raise SdfsegError(f"{checkpoint or '--checkpoint'}: SAM checkpoint file not found (pass --checkpoint PATH "
                          f"to a local {model_type} .pth file, e.g. sam_vit_h_4b8939.pth; nothing is downloaded)")
    sa = import_segment_anything()
    model = sa.sam_model_registry[model_type]()
    try:
        state = torch.load(ckpt, map_location="cpu", weights_only=True)
        model.load_state_dict(state)
    except (RuntimeError, KeyError, OSError, ValueError) as exc:
        msg = str(exc).splitlines()[0][:200]
        raise SdfsegError(f"{ckpt}: not a SAM {model_type} checkpoint ({msg})") from None
    return model.to(pick_device(device)).eval()


@dataclass
class SamConfig:
    checkpoint: str = ""
    """Local SAM weights (.pth)."""
    model_type: str = "vit_h"
    points_per_side: int = 32
    pred_iou_thresh: float = 0.88
    stability_score_thresh: float = 0.95
    points_per_batch: int = 64
    device: str = "auto"


class SamSegmenter:
    """Automatic ("everything") SAM masks of one image; see the module docstring."""

    method = "sam"
    outputs = ("instance", "masks")

    def __init__(self, model, config: SamConfig) -> None:
        sa = import_segment_anything()
        self.config = config
        self.generator = sa.SamAutomaticMaskGenerator(
            model, points_per_side=config.points_per_side, points_per_batch=config.points_per_batch,
            pred_iou_thresh=config.pred_iou_thresh, stability_score_thresh=config.stability_score_thresh,
            output_mode="binary_mask")

    @classmethod
    def from_config(cls, config: SamConfig) -> "SamSegmenter":
        if config.points_per_side < 1:
            raise SdfsegError(f"--points-per-side: expected >= 1, got {config.points_per_side}")
        return cls(load_sam(config.checkpoint, config.model_type, config.device), config)

    def settings(self) -> dict:
        c = self.config
        return {"method": self.method, "checkpoint": Path(c.checkpoint).name if c.checkpoint else "",
                "model_type": c.model_type, "points_per_side": c.points_per_side,
                "pred_iou_thresh": c.pred_iou_thresh, "stability_score_thresh": c.stability_score_thresh}

    def __call__(self, rgb: np.ndarray) -> Segmentation:
        import torch

        h, w = rgb.shape[:2]
        with torch.inference_mode():
            records = self.generator.generate(np.ascontiguousarray(rgb[..., :3], dtype=np.uint8))
        masks = [np.asarray(r["segmentation"], dtype=bool) for r in records]
        scores = [float(r.get("predicted_iou", 1.0)) for r in records]
        return Segmentation(instance=paint_masks(masks, (h, w)),
                            masks=MaskSet.from_masks(masks, h, w, scores=scores))
