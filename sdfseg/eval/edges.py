"""Edge accuracy EA (ClusteringSDF, section 4.1).

The paper defines EA as "the average Dice value between the edge of predicted and GT
labels, which are paired by matching the densest labels in the predicted result with
each GT label". Its code release has no evaluation script, so the details are fixed here:

* **instances**: every nonzero GT instance id of every test frame (id 0 = stuff /
  unlabelled is not an instance); each (frame, GT instance) is one sample;
* **pairing**: within the frame, the GT instance is paired with the nonzero predicted id
  that covers most of its pixels (ties: the smallest id); if all of its pixels are
  predicted 0 there is no partner and the sample scores 0;
* **edges**: the inner boundary of a mask, i.e. its pixels with at least one 4-neighbour
  (inside the image) outside the mask; the image border is not an edge. Since masks are
  regions of a label map, the edge pixels of every label are the pixels whose label
  differs from a 4-neighbour's, computed once per map;
* **Dice** between the paired edge sets: ``2 |E_gt & E_pred| / (|E_gt| + |E_pred|)``,
  exact pixel agreement (no distance tolerance); samples whose GT mask has no edge
  (it fills the whole image) are skipped;
* **average**: plain mean over all samples (frames x instances).

Predictions are resized (nearest) to the GT size first.
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from .semantic import Frames, aligned_frames


def label_edges(labels: np.ndarray) -> np.ndarray:
    """Boolean ``[H, W]``: pixels whose label differs from at least one in-image 4-neighbour."""
    lab = np.asarray(labels)
    edge = np.zeros(lab.shape, dtype=bool)
    dv = lab[1:, :] != lab[:-1, :]
    dh = lab[:, 1:] != lab[:, :-1]
    edge[1:, :] |= dv
    edge[:-1, :] |= dv
    edge[:, 1:] |= dh
    edge[:, :-1] |= dh
    return edge


def frame_edge_dice(gt_inst: np.ndarray, pred_inst: np.ndarray) -> np.ndarray:
    """Per-GT-instance edge Dice of one frame, float64 ``[G]`` (GT ids in increasing order).

    ``gt_inst`` and ``pred_inst`` are ``[H, W]`` of the same size. Instances without any
    edge pixel are left out.
    """
    g = gt_inst.reshape(-1).astype(np.int64)
    p = pred_inst.reshape(-1).astype(np.int64)
    ge = label_edges(gt_inst).reshape(-1)
    pe = label_edges(pred_inst).reshape(-1)
    g_ids, g_of = np.unique(g, return_inverse=True)
    p_ids, p_of = np.unique(p, return_inverse=True)
    g_of, p_of = g_of.reshape(-1), p_of.reshape(-1)
    G, P = len(g_ids), len(p_ids)
    # densest nonzero predicted id inside each GT region (sparse over the pairs that occur)
    nz = p != 0
    pair, count = np.unique(g_of[nz] * P + p_of[nz], return_counts=True)
    pg, pp = pair // P, pair % P
    order = np.lexsort((pp, -count, pg))  # per GT: largest count first, then smallest id
    first = order[np.r_[True, pg[order][1:] != pg[order][:-1]]] if order.size else order
    partner = np.full(G, -1, dtype=np.int64)
    partner[pg[first]] = pp[first]
    g_edge = np.bincount(g_of[ge], minlength=G)
    p_edge = np.bincount(p_of[pe], minlength=P)
    paired = partner[g_of] == p_of  # pixel lies in its GT region's partner
    i_pair = np.bincount(g_of[ge & pe & paired], minlength=G)
    denom = g_edge + np.where(partner >= 0, p_edge[np.maximum(partner, 0)], 0)
    dice = 2.0 * i_pair / np.maximum(denom, 1)
    keep = (g_ids != 0) & (g_edge > 0)
    return dice[keep]


def edge_accuracy(gt_inst: Frames, pred_inst: Frames) -> Optional[float]:
    """Mean edge Dice over all (frame, GT instance) samples; see the module docstring.

    Args:
        gt_inst: GT instance maps ``[N, H, W]`` (0 = no instance).
        pred_inst: predicted instance maps ``[N, h, w]`` (0 = no instance), resized to the GT size.
    Returns:
        EA in [0, 1], or None when the GT has no instance with an edge.
    """
    gt_frames, (pred_frames,) = aligned_frames(gt_inst, [pred_inst], ["pred_inst"])
    scores = [frame_edge_dice(g, p) for g, p in zip(gt_frames, pred_frames)]
    allv = np.concatenate(scores) if scores else np.zeros(0)
    return float(allv.mean()) if allv.size else None
