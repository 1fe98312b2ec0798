"""Scene-level panoptic quality PQ^scene (Panoptic Lifting protocol) and instance F-score.

PQ^scene, exactly as REFERENCE.md section 5:

1. predictions resized (nearest) to the GT size; pixels with GT class 0 (void) removed;
2. the (class, instance id) pairs of all frames are pooled, so one predicted id must
   cover the same object in every view;
3. class filter: a class of ``thing_ids | stuff_ids`` (never 0) is retained when it is
   present on at least one side and, on every side where it is present, covers at least
   0.5% of the void-free pixels. Pixels of non-retained or unknown classes (predicted
   class 0 included) become void on their side;
4. stuff classes get instance id 0 (one segment per class per scene);
5. a GT and a predicted segment of the same class match (TP) when IoU > 0.5 (strict),
   the union leaving out predicted pixels that are GT-void and GT pixels predicted void;
   an unmatched GT segment is a FN unless more than half of it is predicted void; an
   unmatched predicted segment is a FP unless more than half of it is GT-void;
6. per class PQ = sum IoU / (TP + FP/2 + FN/2), SQ = sum IoU / TP, RQ = TP / (TP + FP/2 + FN/2)
   (0 where the denominator is 0); reported values are plain means over retained classes.

Everything is vectorised: segments are found with ``np.unique`` on int64 keys
``class * U + dense_id``, areas and intersections with ``np.bincount``.
"""

from __future__ import annotations

from typing import Optional

import numpy as np
from scipy.optimize import linear_sum_assignment

from ..data.scene import ClassInfo
from .semantic import MIN_FRACTION, Frames, dense_ids, gather_valid


def retained_classes(gt_cls: np.ndarray, pred_cls: np.ndarray, classes: ClassInfo,
                     min_fraction: float = MIN_FRACTION) -> np.ndarray:
    """Classes kept by the PQ class filter (step 3), sorted int64 ``[K]``.

    ``gt_cls`` / ``pred_cls`` are the void-free pixel classes int64 ``[P]``.
    """
    candidates = (set(classes.thing_ids) | set(classes.stuff_ids)) - {0}
    total = max(int(gt_cls.size), 1)
    present, small = set(), set()
    for arr in (gt_cls, pred_cls):
        ids, counts = np.unique(arr, return_counts=True)
        present.update(ids.tolist())
        small.update(ids[counts / total < min_fraction].tolist())
    return np.array(sorted((candidates & present) - small), dtype=np.int64)


def _segments(cls: np.ndarray, inst: np.ndarray, valid: np.ndarray, stuff: np.ndarray):
    """Segment index per pixel int64 ``[P]`` (-1 where void) and the class of each segment ``[S]``."""
    inst = np.where(np.isin(cls, stuff), 0, inst)
    ids, dense = dense_ids(inst[valid])
    U = max(len(ids), 1)
    seg = np.full(cls.shape, -1, dtype=np.int64)
    uniq, seg[valid] = dense_ids(cls[valid] * U + dense)
    return seg, uniq // U


def _pair_counts(a: np.ndarray, b: np.ndarray, nb: int) -> tuple[np.ndarray, np.ndarray]:
    """Occurring pair keys ``a * nb + b`` (sorted ``[Q]``) and their pixel counts ``[Q]``."""
    uniq, inv = dense_ids(a * max(nb, 1) + b)
    return uniq, np.bincount(inv, minlength=len(uniq))


def _pq_counts(gseg, g_cls, pseg, p_cls):
    """Match segments; returns (per-GT-segment IoU of its TP or 0, tp_g, fn_g, fp_p) arrays."""
    gv, pv = gseg >= 0, pseg >= 0
    Ng, Np = len(g_cls), len(p_cls)
    g_area = np.bincount(gseg[gv], minlength=Ng)
    p_area = np.bincount(pseg[pv], minlength=Np)
    g_void = np.bincount(gseg[gv & ~pv], minlength=Ng)  # GT pixels predicted void
    p_void = np.bincount(pseg[pv & ~gv], minlength=Np)  # predicted pixels that are GT-void
    both = gv & pv
    pair, inter = _pair_counts(gseg[both], pseg[both], Np)
    gi, pi = pair // max(Np, 1), pair % max(Np, 1)
    union = p_area[pi] - p_void[pi] + g_area[gi] - g_void[gi] - inter
    iou = inter / np.maximum(union, 1)
    tp = (g_cls[gi] == p_cls[pi]) & (iou > 0.5)
    g_iou = np.zeros(Ng)
    g_iou[gi[tp]] = iou[tp]
    g_tp = np.zeros(Ng, bool)
    g_tp[gi[tp]] = True
    p_tp = np.zeros(Np, bool)
    p_tp[pi[tp]] = True
    fn = ~g_tp & ~(g_void / np.maximum(g_area, 1) > 0.5)
    fp = ~p_tp & ~(p_void / np.maximum(p_area, 1) > 0.5)
    return g_iou, g_tp, fn, fp


def _mean(values: np.ndarray) -> Optional[float]:
    return float(values.mean()) if values.size else None


def panoptic_quality(gt_sem: Frames, gt_inst: Frames, pred_sem: Frames, pred_inst: Frames,
                     classes: ClassInfo, min_fraction: float = MIN_FRACTION) -> dict:
    """PQ^scene over all frames pooled (see the module docstring for the exact protocol).

    Args:
        gt_sem, gt_inst: GT semantic / instance maps ``[N, H, W]`` (class 0 = void).
        pred_sem, pred_inst: predicted maps ``[N, h, w]``, resized (nearest) to the GT size.
        classes: thing and stuff class ids and names.
    Returns:
        ``{"pq", "sq", "rq", "pq_things", "sq_things", "rq_things", "pq_stuff", "sq_stuff",
        "rq_stuff", "num_classes", "dropped_classes", "per_class": [{"class", "name", "thing",
        "pq", "sq", "rq", "tp", "fp", "fn", "iou_sum"}, ...]}``; values are fractions in [0, 1],
        None for a mean over no class.
    """
    gs, (gi, ps, pi) = gather_valid(gt_sem, [(gt_inst, False), (pred_sem, True), (pred_inst, True)])
    kept = retained_classes(gs, ps, classes, min_fraction)
    stuff = np.array(sorted(set(classes.stuff_ids) - {0}), dtype=np.int64)
    gseg, g_cls = _segments(gs, gi, np.isin(gs, kept), stuff)
    pseg, p_cls = _segments(ps, pi, np.isin(ps, kept), stuff)
    g_iou, g_tp, fn, fp = _pq_counts(gseg, g_cls, pseg, p_cls)

    K = len(kept)
    g_k, p_k = np.searchsorted(kept, g_cls), np.searchsorted(kept, p_cls)
    iou_sum = np.bincount(g_k, weights=g_iou, minlength=K)
    tp = np.bincount(g_k, weights=g_tp, minlength=K)
    fn_c = np.bincount(g_k, weights=fn, minlength=K)
    fp_c = np.bincount(p_k, weights=fp, minlength=K)
    denom = tp + 0.5 * fp_c + 0.5 * fn_c
    pq = np.divide(iou_sum, denom, out=np.zeros(K), where=denom > 0)
    sq = np.divide(iou_sum, tp, out=np.zeros(K), where=tp > 0)
    rq = np.divide(tp, denom, out=np.zeros(K), where=denom > 0)
    thing = np.array([classes.is_thing(int(c)) for c in kept], dtype=bool)

    rows = [{"class": int(c), "name": classes.name(int(c)), "thing": bool(thing[k]),
             "pq": float(pq[k]), "sq": float(sq[k]), "rq": float(rq[k]),
             "tp": int(tp[k]), "fp": int(fp_c[k]), "fn": int(fn_c[k]), "iou_sum": float(iou_sum[k])}
            for k, c in enumerate(kept)]
    present = set(np.unique(gs).tolist()) | set(np.unique(ps).tolist())
    candidates = (set(classes.thing_ids) | set(classes.stuff_ids)) - {0}
    out = {"pq": _mean(pq), "sq": _mean(sq), "rq": _mean(rq)}
    for tag, sel in (("things", thing), ("stuff", ~thing)):
        out.update({f"pq_{tag}": _mean(pq[sel]), f"sq_{tag}": _mean(sq[sel]), f"rq_{tag}": _mean(rq[sel])})
    out["num_classes"] = K
    out["dropped_classes"] = sorted(int(c) for c in (candidates & present) - set(kept.tolist()))
    out["per_class"] = rows
    return out


def instance_fscore(gt_sem: Frames, gt_inst: Frames, pred_sem: Frames, pred_inst: Frames,
                    classes: ClassInfo, iou_threshold: float = 0.5) -> dict:
    """Class-agnostic instance F-score with Hungarian matching (Unified-Lift style), scene level.

    GT instances are the nonzero GT ids on pixels of a thing class; predicted instances are
    the nonzero predicted ids on pixels predicted as a thing class. GT-void pixels are
    removed and ids are pooled over all frames (one id = one object in every view).
    Instances are matched one-to-one maximising the total IoU
    (``scipy.optimize.linear_sum_assignment``); a matched pair with IoU >= ``iou_threshold``
    is a TP.

    Returns:
        ``{"fscore": 2 TP / (G + P), "precision": TP / P, "recall": TP / G,
        "matched_miou": mean over GT instances of the IoU with its assigned prediction
        (0 when unassigned), "num_gt": G, "num_pred": P, "tp": TP}``; scores are None when
        undefined (no instances on either side).
    """
    gs, (gi, ps, pi) = gather_valid(gt_sem, [(gt_inst, False), (pred_sem, True), (pred_inst, True)])
    things = np.array(sorted(set(classes.thing_ids) - {0}), dtype=np.int64)
    gi = np.where(np.isin(gs, things), gi, 0)
    pi = np.where(np.isin(ps, things), pi, 0)
    g_ids, g_dense = dense_ids(gi[gi != 0])
    p_ids, p_dense = dense_ids(pi[pi != 0])
    G, P = len(g_ids), len(p_ids)
    g_area = np.bincount(g_dense, minlength=G)
    p_area = np.bincount(p_dense, minlength=P)
    both = (gi != 0) & (pi != 0)
    g_of = np.searchsorted(g_ids, gi[both])
    p_of = np.searchsorted(p_ids, pi[both])
    pair, inter = _pair_counts(g_of, p_of, P)
    # only predictions that touch some GT instance can be matched: keep the matrix [G, P'] small
    cand, col = np.unique(pair % max(P, 1), return_inverse=True)
    iou = np.zeros((G, len(cand)))
    pg, pp = pair // max(P, 1), pair % max(P, 1)
    iou[pg, col.reshape(-1)] = inter / (g_area[pg] + p_area[pp] - inter)
    rows, cols = linear_sum_assignment(-iou) if iou.size else (np.zeros(0, int), np.zeros(0, int))
    matched = iou[rows, cols]
    tp = int((matched >= iou_threshold).sum())
    return {
        "fscore": 2.0 * tp / (G + P) if G + P else None,
        "precision": tp / P if P else None,
        "recall": tp / G if G else None,
        "matched_miou": float(matched.sum() / G) if G else None,
        "num_gt": int(G), "num_pred": int(P), "tp": tp,
    }
