"""Fingerprints of short training runs of every method, to prove a refactor changes no result.

``python tests/method_fingerprint.py OUT.json`` trains each case of :data:`CASES` for a few steps on the
tests' tiny scene (one thread, fixed seed), finishes the run (channel table, ownership vote, test
renders, metrics, meshes) and writes, per case: every weight tensor's sum and sum of absolute values
(float64), the rendered test label maps (instance and semantic PNGs, as integer sums per frame and
a hash), the metrics and the channel table. ``tests/data/method_fingerprints.json`` was written by
the code *before* the methods moved behind :mod:`sdfseg.methods`; ``test_method_boundary.py``
recomputes the fingerprints with the code of now and compares. The float sums depend on the CPU
the code runs on, not only on the code and packages: with the same packages, machines of this project
give a hash-grid weight sum of 4.2145165 or 4.2145014 (the file was written again by the code of commit
068fc61 on a machine of the first kind); the test compares floats to a relative tolerance for that.
"""

from __future__ import annotations

import hashlib
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _helpers import HEAD, TINY, demo_config, tiny_scene  # noqa: E402

STEPS = 6
COMMON = TINY + ["render.chunk=512", "render.mesh_resolution=24", "train.log_every=1", "train.segmentation_start=2",
                 "model.scene_offsets=false", "model.offset_grid_levels=0",  # written with the plain channels
                 "render.beta=null", "render.carve_margin=0",  # ... and the maps at the trained beta and SDF
                 "render.split_grid=0", "render.vote_grid=64",  # ... without the split step, the vote at 64^3 ...
                 "render.vote_min_island=0", "render.vote_rays=32768",  # ... islands kept, from 32768 rays
                 f"train.iterations={STEPS}", "train.distinction_start=0.5", "train.device=cpu"]
CASES = {
    "clustering": [],
    "supervised_noisy": ["train.method=supervised"],
    "supervised_oracle": ["train.method=supervised", "train.oracle_labels=true"],
    "semantic": ["train.mode=semantic"],
    "clustering_features": HEAD + ["features.start=0", "features.rays=32"],
}


def _maps(folder: Path) -> dict:
    from sdfseg.io import read_label_png

    out = {}
    for f in sorted(folder.glob("*.png")):
        a = read_label_png(f).astype(np.int64)
        out[f.stem] = [int(a.sum()), hashlib.sha256(a.tobytes()).hexdigest()[:16]]
    return out


def _render_sums(trainer) -> dict:
    """Per-channel sums (float64) and the sum of absolute values of the raw maps of the first test view as the finished run renders them."""
    from sdfseg.core.render.views import render_rays_chunked
    from sdfseg.data.rays import pixel_rays

    scene, model = trainer.scene, trainer.model
    i = int(scene.split["test"][0])
    h, w = scene.hw
    v, u = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    c2w = torch.as_tensor(scene.c2w[i], dtype=torch.float32)[None].expand(h * w, 4, 4)
    k = torch.as_tensor(scene.intrinsics[i], dtype=torch.float32)[None].expand(h * w, 3, 3)
    o, d, _ = pixel_rays(c2w, k, v.reshape(-1), u.reshape(-1))
    keys = ("rgb", "depth", "opacity") + (("semantic",) if model.semantic is not None else ())
    out = render_rays_chunked(model, o, d, 512, keys)
    return {k: v.double().reshape(v.shape[0], -1).sum(0).tolist() + [float(v.double().abs().sum())]
            for k, v in out.items()}


def fingerprint(case: str, scene_dir: Path, run_dir: Path) -> dict:
    from sdfseg.training.pipeline import finish
    from sdfseg.training.trainer import Trainer

    torch.set_num_threads(1)
    cfg = demo_config(COMMON, scene_dir, run_dir, *CASES[case])
    trainer = Trainer(cfg, progress=False)
    trainer.fit(progress=False)
    weights = {n: [float(t.double().sum()), float(t.double().abs().sum())]
               for n, t in trainer.model.state_dict().items() if torch.is_tensor(t) and t.is_floating_point()}
    metrics = finish(trainer, progress=False)
    renders = _render_sums(trainer)
    keep = ("pq", "sq", "rq", "miou", "ea")
    return {"weights": weights,
            "instance": _maps(run_dir / "test" / "instance"),
            "semantic": _maps(run_dir / "test" / "semantic"),
            "metrics": {k: metrics.get(k) for k in keep},
            "renders": renders,
            "channels": json.loads((run_dir / "channels.json").read_text())["channels"]}


def all_fingerprints(cases=None) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        scene = tiny_scene(Path(tmp) / "scene")
        return {c: fingerprint(c, scene, Path(tmp) / c) for c in (cases or CASES)}


if __name__ == "__main__":
    out = Path(sys.argv[1])
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(all_fingerprints(), indent=1, sort_keys=True))
    print(f"wrote {out}")
