"""A COLMAP capture written from a synthetic scene, as a real SfM would give it, and its scoring.

:func:`write_capture` takes a scene with sensor depth and GT (the demo) and writes

* ``OUT/colmap``: ``images/``, ``sparse/0/{cameras,images,points3D}.txt`` and no depth. The poses and
  points are under a random similarity transform (scale 0.3-3, any rotation, a shift), the poses carry
  noise (``pose_noise_deg`` rotation, ``pose_noise`` x the scene size translation), the points are the
  surface seen by several views (sampled from the GT depth, observed where a view's depth agrees) with
  position noise and reprojection errors, plus a share of outlier points (random positions, short tracks,
  errors that pass the reader's filter);
* ``OUT/sensor``: the same frames with the true poses and the sensor depth as a ``transforms.json`` scene,
  the comparison with sensor depth;
* in both, the scene's noisy instance labels (``m2f_instance/``: no classes, the captures are
  instance-only) and its split (``splits.json`` / ``train_filenames``).

:func:`score_run` scores a run of either against the source scene's GT: the test maps with the classes
collapsed to object / background (PQ^scene, mIoU, EA), and the per-object meshes after aligning the run's
world to GT by the similarity that maps its camera centres onto the GT ones (Umeyama), as one aligns a real
capture to a GT scan.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy.spatial.transform import Rotation

from ..data import ReadOptions, load_scene
from ..data.formats import common as C
from ..errors import SdfsegError
from ..io import save_image_atomic, save_label_png, write_json_atomic, write_text_atomic


def _sample_points(scene, per_frame: int, rng: np.random.Generator) -> np.ndarray:
    pts = []
    from ..data.normalize import backproject_depth

    for i in range(scene.num_frames):
        p = backproject_depth(scene.depth[i], scene.intrinsics[i].astype(np.float64), scene.c2w[i].astype(np.float64))
        if len(p):
            pts.append(p[rng.choice(len(p), size=min(per_frame, len(p)), replace=False)])
    return np.concatenate(pts) if pts else np.zeros((0, 3))


def _observations(scene, points: np.ndarray, tol: float = 0.02) -> list[np.ndarray]:
    """Per point the frames that see it: in the image, in front, and the frame's depth within ``tol`` x z."""
    from ..data.formats.colmap import project_points

    seen = np.zeros((len(points), scene.num_frames), dtype=bool)
    for i in range(scene.num_frames):
        idx, u, v, z = project_points(points, scene.c2w[i].astype(np.float64), scene.intrinsics[i], scene.hw)
        d = np.asarray(scene.depth[i], dtype=np.float64)[v, u]
        seen[idx, i] = (d > 0) & (np.abs(d - z) <= tol * z)
    return [np.flatnonzero(s) for s in seen]


def write_capture(scene_dir: str | Path, out: str | Path, seed: int = 0, points_per_frame: int = 150,
                  pose_noise_deg: float = 0.2, pose_noise: float = 0.002, point_noise: float = 0.003,
                  outlier_share: float = 0.05, label_source: str = "m2f", exposure: float = 0.0) -> dict:
    """Write ``out/colmap`` and ``out/sensor`` from the scene at ``scene_dir`` (see the module doc); returns
    the similarity transform used (``x_capture = s R x + t``) and counts. ``exposure > 0``: every frame's
    colours are multiplied by a gain ``exp(N(0, exposure))`` (a phone's auto-exposure), in both captures."""
    rng = np.random.default_rng(seed)
    out = Path(out)
    scene = load_scene(scene_dir, "auto", ReadOptions())
    if scene.depth is None or scene.depth_kind != "metric":
        raise SdfsegError(f"{scene_dir}: a capture is written from a scene with sensor depth")
    if label_source not in scene.labels:
        raise SdfsegError(f"{scene_dir}: no label source '{label_source}' (has {', '.join(scene.labels) or 'none'})")
    names = scene.frame_names
    gains = np.exp(np.random.default_rng(seed + 1).normal(0.0, exposure, len(names))) if exposure > 0 \
        else np.ones(len(names))
    images = [np.clip(scene.rgb[i].astype(np.float32) * gains[i], 0, 255).round().astype(np.uint8)
              for i in range(len(names))]
    lo, hi = scene.c2w[:, :3, 3].min(0), scene.c2w[:, :3, 3].max(0)
    size = float(np.linalg.norm(hi - lo)) or 1.0
    s = float(np.exp(rng.uniform(np.log(0.3), np.log(3.0))))
    R = Rotation.random(random_state=rng).as_matrix()
    t = rng.uniform(-3.0, 3.0, 3)
    to_capture = lambda x: s * x @ R.T + t  # noqa: E731

    # points: surface seen by >= 2 views, noisy, in the capture's frame; then outliers
    pts = _sample_points(scene, points_per_frame, rng)
    tracks = _observations(scene, pts)
    keep = np.array([len(tr) >= 2 for tr in tracks], dtype=bool)
    pts, tracks = pts[keep], [tr for tr, k in zip(tracks, keep) if k]
    pts = pts + rng.normal(0.0, point_noise * size, pts.shape)
    errors = list(rng.uniform(0.2, 1.2, len(pts)))
    n_out = int(round(outlier_share * len(pts)))
    p_lo, p_hi = pts.min(0), pts.max(0)
    outliers = rng.uniform(p_lo, p_hi, (n_out, 3))
    out_tracks = [rng.choice(scene.num_frames, size=int(rng.integers(2, 4)), replace=False) for _ in range(n_out)]
    all_pts = to_capture(np.concatenate([pts, outliers]))
    all_tracks = tracks + out_tracks
    errors += list(rng.uniform(0.5, 1.9, n_out))

    col = out / "colmap"
    (col / "sparse" / "0").mkdir(parents=True, exist_ok=True)
    cams, imgs = [], []
    for i, name in enumerate(names):
        K = scene.intrinsics[i].astype(np.float64).tolist()
        cams.append(f"{i + 1} PINHOLE {scene.hw[1]} {scene.hw[0]} {K[0][0]!r} {K[1][1]!r} {K[0][2]!r} {K[1][2]!r}\n")
        c2w = scene.c2w[i].astype(np.float64)
        rot = R @ c2w[:3, :3]
        rot = Rotation.from_rotvec(np.radians(pose_noise_deg) * rng.normal(size=3) / np.sqrt(3)).as_matrix() @ rot
        centre = to_capture(c2w[:3, 3]) + rng.normal(0.0, pose_noise * size * s, 3)
        r_wc = rot.T
        q = Rotation.from_matrix(r_wc).as_quat().tolist()  # x, y, z, w
        tvec = (-r_wc @ centre).tolist()
        imgs.append(f"{i + 1} {q[3]!r} {q[0]!r} {q[1]!r} {q[2]!r} {tvec[0]!r} {tvec[1]!r} {tvec[2]!r} {i + 1} "
                    f"{name}.png\n\n")
        save_image_atomic(col / "images" / f"{name}.png", images[i])
    write_text_atomic(col / "sparse" / "0" / "cameras.txt", "# synthetic capture\n" + "".join(cams))
    write_text_atomic(col / "sparse" / "0" / "images.txt", "".join(imgs))
    write_text_atomic(col / "sparse" / "0" / "points3D.txt", "".join(
        f"{j + 1} {x[0]!r} {x[1]!r} {x[2]!r} 128 128 128 {e:.3f} {' '.join(f'{int(f) + 1} 0' for f in tr)}\n"
        for j, (x, e, tr) in enumerate(zip(all_pts.tolist(), errors, all_tracks))))
    split = {k: [names[int(i)] for i in scene.split[k]] for k in ("train", "test")}
    write_json_atomic(col / "splits.json", split)

    sen = out / "sensor"
    frames = []
    for i, name in enumerate(names):
        K = scene.intrinsics[i].astype(np.float64)
        save_image_atomic(sen / "images" / f"{name}.png", images[i])
        mm = np.clip(np.asarray(scene.depth[i], np.float64) * 1000.0, 0, 65535).round().astype(np.uint16)
        save_label_png(sen / "depth" / f"{name}.png", mm)
        frames.append({"file_path": f"images/{name}.png", "depth_file_path": f"depth/{name}.png",
                       "transform_matrix": (scene.c2w[i].astype(np.float64) @ C.OPENGL_TO_OPENCV).tolist(),
                       "fl_x": float(K[0, 0]), "fl_y": float(K[1, 1]), "cx": float(K[0, 2]), "cy": float(K[1, 2])})
    write_json_atomic(sen / "transforms.json", {"w": scene.hw[1], "h": scene.hw[0], "frames": frames,
                                                "train_filenames": [f"images/{n}.png" for n in split["train"]],
                                                "test_filenames": [f"images/{n}.png" for n in split["test"]]})
    labels = scene.labels[label_source]
    for folder in (col, sen):
        for i, name in enumerate(names):
            save_label_png(folder / "m2f_instance" / f"{name}.png", np.asarray(labels.instance[i]))
    info = {"source": str(scene_dir), "scale": s, "rotation": R.tolist(), "translation": t.tolist(),
            "points": int(len(pts)), "outliers": n_out, "frames": len(names), "seed": seed,
            "exposure_gains": gains.tolist()}
    write_json_atomic(out / "capture.json", info)
    return info


def umeyama(src: np.ndarray, dst: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """Similarity ``(s, R, t)`` minimising ``|s R src + t - dst|^2`` over corresponding points ``[N, 3]``."""
    mu_s, mu_d = src.mean(0), dst.mean(0)
    a, b = src - mu_s, dst - mu_d
    cov = b.T @ a / len(src)
    U, S, Vt = np.linalg.svd(cov)
    D = np.eye(3)
    if np.linalg.det(U) * np.linalg.det(Vt) < 0:
        D[2, 2] = -1.0
    R = U @ D @ Vt
    var = (a ** 2).sum() / len(src)
    s = float(np.trace(np.diag(S) @ D) / var)
    return s, R, mu_d - s * R @ mu_s


def collapse_classes(sem: np.ndarray, inst: np.ndarray, thing: np.ndarray) -> np.ndarray:
    """Scene classes -> instance-only classes: 0 void, 2 where a thing instance is, else 1."""
    out = np.where(sem > 0, 1, 0)
    return np.where((sem > 0) & thing[np.clip(sem, 0, len(thing) - 1)] & (inst > 0), 2, out).astype(np.int32)


def score_run(run_dir: str | Path, gt_scene_dir: str | Path) -> dict:
    """PQ^scene, mIoU, EA of the run's test maps (classes collapsed to object / background) and the mean
    per-object mesh F-score at 5 cm after aligning the run's world to the GT scene by camera centres."""
    import trimesh

    from ..data.formats.common import INSTANCE_ONLY_CLASSES
    from ..eval import evaluate_arrays
    from ..eval.meshes import object_mesh_metrics, scene_gt_meshes
    from ..io import read_label_png
    from ..runs import open_run

    run = open_run(run_dir)
    gt = load_scene(gt_scene_dir, "auto", ReadOptions())
    index = {n: i for i, n in enumerate(gt.frame_names)}
    norm = run.scene.normalization
    mine = np.array([norm.to_world(run.scene.c2w[i][:3, 3].astype(np.float64)) for i in range(run.scene.num_frames)])
    theirs = np.array([gt.c2w[index[n]][:3, 3] for n in run.scene.frame_names], dtype=np.float64)
    s, R, t = umeyama(mine, theirs)
    residual = float(np.sqrt(((s * mine @ R.T + t - theirs) ** 2).sum(1).mean()))
    thing = np.zeros(gt.classes.num_classes, dtype=bool)
    thing[list(gt.classes.thing_ids)] = True
    test = [run.scene.frame_names[int(i)] for i in run.scene.split["test"]]
    g_sem, g_inst, p_sem, p_inst = [], [], [], []
    for n in test:
        i = index[n]
        gi = np.asarray(gt.gt.instance[i])
        g_sem.append(collapse_classes(np.asarray(gt.gt.semantic[i]), gi, thing))
        g_inst.append(gi)
        p_sem.append(read_label_png(Path(run_dir) / "test" / "semantic" / f"{n}.png"))
        p_inst.append(read_label_png(Path(run_dir) / "test" / "instance" / f"{n}.png"))
    m = evaluate_arrays(g_sem, g_inst, p_sem, p_inst, INSTANCE_ONLY_CLASSES)
    meshes = {}
    for f in sorted((Path(run_dir) / "meshes").glob("object_*.ply")):
        mesh = trimesh.load(f, process=False)
        mesh.vertices = s * np.asarray(mesh.vertices) @ R.T + t
        meshes[int(f.stem.split("_")[1])] = mesh
    gt_meshes = scene_gt_meshes(gt)
    mesh = object_mesh_metrics(meshes, gt_meshes) if gt_meshes is not None else None
    return {"run": str(run_dir), "pq": m["pq"], "sq": m["sq"], "rq": m["rq"], "miou": m["miou"], "ea": m["ea"],
            "mesh_fscore": None if mesh is None else mesh["mean_fscore"],
            "mesh_matched": None if mesh is None else f"{mesh['matched']}/{mesh['gt_objects']}",
            "alignment": {"scale": s, "camera_residual": residual}, "test_frames": len(test)}


def format_score(r: dict) -> str:
    pct = lambda v: "-" if v is None else f"{100 * v:.1f}"  # noqa: E731
    f = "-" if r["mesh_fscore"] is None else f"{r['mesh_fscore']:.3f} ({r['mesh_matched']})"
    return (f"{r['run']}: PQ^scene {pct(r['pq'])}, mIoU {pct(r['miou'])}, EA {pct(r['ea'])}, mesh F@5cm {f}; "
            f"aligned by camera centres (scale {r['alignment']['scale']:.4f}, residual "
            f"{r['alignment']['camera_residual']:.4f} m)")
