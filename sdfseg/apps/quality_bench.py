"""Quality benchmark: one config trained on several scenes and seeds, one table.

Scenes: the demo scene (``sdfseg.data.synthetic``, the one the demo recipe was tuned on) and
rooms of the independent family (``sdfseg.data.rooms``). Each scene-and-seed run is a
``tools/train.py`` process with one thread; ``jobs`` of them run at once. The benchmark is
resumable: a finished run is reused, a killed one resumes from its checkpoint. The settings
of a benchmark folder are recorded in ``bench.json`` and a later call with other settings is
refused, so a table never mixes runs of two configs.

Per run the table has PQ^scene, SQ, RQ, mIoU, EA and the mean per-object mesh F-score at 5 cm,
beside the noisy 2D labels' PQ^scene, mIoU and EA on the same test views; then the mean and
the worst (lowest) of each column.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from ..errors import SdfsegError
from ..io import write_json_atomic, write_text_atomic

ROOT = Path(__file__).resolve().parents[2]

ROOM_MIN_CHANNELS = 20
"""Rooms hold up to 11 thing instances: a config with fewer channels (the demo's 10) trains them with 20;
the demo scene keeps the config's own, and a config with more (K = 50) keeps its own everywhere."""


def room_overrides(num_channels: int) -> list[str]:
    """Overrides for the rooms of a config with ``num_channels`` SDF channels (after the user's ``--set``)."""
    return [f"model.num_channels={ROOM_MIN_CHANNELS}"] if num_channels < ROOM_MIN_CHANNELS else []

NOISY_PQ_BAND = (35.0, 50.0)
"""The noisy labels' own PQ^scene of a room must lie here (the range of real rooms; see sdfseg.data.rooms)."""


@dataclass(frozen=True)
class Tier:
    scenes: tuple[str, ...]
    seeds: tuple[int, ...]
    overrides: tuple[str, ...] = ()
    about: str = ""


TIERS = {
    "full": Tier(("demo", "room0", "room1", "room2", "room3"), (0, 1), (),
                 "the config as it is on the demo scene and four rooms, two seeds each (10 runs)"),
    "screen": Tier(("demo", "room0", "room1"), (0,), ("train.iterations=1200",),
                   "1200 iterations on the demo scene and two rooms, one seed (3 runs), for trying ideas"),
}

METHOD_KEYS = ("pq", "sq", "rq", "miou", "ea", "mesh_f", "psnr", "depth_20cm")
LOWER_IS_BETTER = frozenset({"depth_20cm"})
"""Columns whose worst value is the highest."""
NOISY_KEYS = ("noisy_pq", "noisy_miou", "noisy_ea")


def ensure_scene(data: Path, scene: str, config: Path) -> Path:
    """Generate ``scene`` (``demo`` or ``room<seed>``) under ``data`` unless it is there."""
    out = data / scene
    if out.is_dir() and any(out.iterdir()):
        return out
    if scene == "demo":
        from ..config import load_config
        from ..data.synthetic import generate_scene

        s = load_config(config).data.synthetic
        generate_scene(out, objects=s.objects, views=s.views, height=s.height, width=s.width, seed=s.seed,
                       progress=False)
    elif scene.startswith("room") and scene[4:].isdigit():
        from ..data.rooms import generate_room

        generate_room(out, seed=int(scene[4:]), progress=False)
    else:
        raise SdfsegError(f"--scenes: unknown scene '{scene}' (expected demo or room<seed>, e.g. room0)")
    return out


def check_settings(tier_dir: Path, settings: dict) -> None:
    """Record the settings of a benchmark folder; refuse a folder made with other settings."""
    f = tier_dir / "bench.json"
    if f.exists():
        old = json.loads(f.read_text())
        if old != settings:
            raise SdfsegError(f"{f}: the runs here were made with other settings ({old}); use another --root or "
                              "delete the folder")
        return
    write_json_atomic(f, settings)


def run_command(config: Path, scene: Path, run_dir: Path, seed: int, overrides: list[str]) -> list[str]:
    """The ``tools/train.py`` command of one run: fresh, resumed after a kill, or replacing a run that
    died before its first checkpoint. Paths are absolute: the command runs in the code's folder, which
    need not be the caller's (relative paths would name other folders there, and a missing scene folder
    would be generated as the demo scene)."""
    config, scene, run_dir = Path(config).resolve(), Path(scene).resolve(), Path(run_dir).resolve()
    cmd = [sys.executable, str(ROOT / "tools" / "train.py"), str(config), "--no-progress",
           "--set", f"data.path={scene}", f"run.dir={run_dir}", f"train.seed={seed}", *overrides]
    if (run_dir / "checkpoints" / "last.pt").exists():
        cmd.append("--resume")
    elif run_dir.exists() and any(p.name != ".lock" for p in run_dir.iterdir()):
        cmd.append("--overwrite")
    return cmd


def finished(run_dir: Path, meshes: bool) -> bool:
    return (run_dir / "metrics.json").exists() and (not meshes or (run_dir / "meshes" / "mesh_metrics.json").exists())


def row(run_dir: Path) -> dict:
    """The table row of a finished run (values in percent)."""
    m = json.loads((run_dir / "metrics.json").read_text())
    b = m.get("baseline") or {}
    mesh = run_dir / "meshes" / "mesh_metrics.json"
    mesh_f = json.loads(mesh.read_text()).get("gt_comparison", {}).get("mean_fscore") if mesh.exists() else None
    rec = m.get("reconstruction") or {}  # runs evaluated before it existed have none
    pct = lambda v: None if v is None else 100.0 * v  # noqa: E731
    return {"pq": pct(m["pq"]), "sq": pct(m["sq"]), "rq": pct(m["rq"]), "miou": pct(m["miou"]), "ea": pct(m["ea"]),
            "mesh_f": pct(mesh_f), "psnr": rec.get("psnr"), "depth_20cm": pct(rec.get("depth_over_20cm")),
            "noisy_pq": pct(b.get("pq")), "noisy_miou": pct(b.get("miou")), "noisy_ea": pct(b.get("ea"))}


def run_jobs(jobs: list[tuple[str, list[str]]], parallel: int, log_dir: Path) -> dict[str, float]:
    """Run ``(name, command)`` jobs, ``parallel`` at a time, each on one thread; returns the
    seconds each took. A failed job is a one-line error naming its log."""
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    pending, running, seconds = list(jobs), {}, {}
    log_dir.mkdir(parents=True, exist_ok=True)
    while pending or running:
        while pending and len(running) < parallel:
            name, cmd = pending.pop(0)
            log = open(log_dir / f"{name}.log", "a")
            print(f"start {name}: {' '.join(cmd[1:3])} ... ({'resume' if '--resume' in cmd else 'fresh'})", flush=True)
            running[name] = (subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT), log,
                             time.time())
        time.sleep(1.0)
        for name, (proc, log, t0) in list(running.items()):
            if proc.poll() is None:
                continue
            log.close()
            del running[name]
            seconds[name] = time.time() - t0
            if proc.returncode != 0:
                for p, lg, _ in running.values():
                    p.terminate()
                    lg.close()
                last = (log_dir / f"{name}.log").read_text().strip().splitlines()[-1:] or [""]
                raise SdfsegError(f"benchmark run {name} failed (exit {proc.returncode}: {last[0]}); see "
                                  f"{log_dir / (name + '.log')}")
            print(f"done  {name} in {seconds[name] / 60:.1f} min", flush=True)
    return seconds


def summarize(rows: dict[str, dict]) -> dict[str, dict]:
    """Mean and worst (lowest; highest for :data:`LOWER_IS_BETTER`) of every column over ``rows``."""
    out = {"mean": {}, "worst": {}}
    for k in METHOD_KEYS + NOISY_KEYS:
        vals = [r[k] for r in rows.values() if r.get(k) is not None]
        out["mean"][k] = sum(vals) / len(vals) if vals else None
        out["worst"][k] = (max if k in LOWER_IS_BETTER else min)(vals) if vals else None
    return out


def per_class(run_dirs: list[Path]) -> dict[str, dict]:
    """IoU per class (percent) over finished runs: ``{name: {"kind", "iou", "runs", "zero", "noisy_iou",
    "noisy_runs"}}``, the mean over the runs where the evaluation protocol counts the class (``runs`` of
    them, ``zero`` at IoU 0), beside the noisy labels' mean on the same runs' test views. ``kind`` is
    thing, stuff, or thing/stuff where scene families differ (the demo's table is a thing, the rooms' stuff)."""
    acc: dict[str, dict] = {}
    for d in run_dirs:
        m = json.loads((d / "metrics.json").read_text())
        for rows, key in ((m.get("per_class") or [], "iou"), ((m.get("baseline") or {}).get("per_class") or [],
                                                              "noisy_iou")):
            for c in rows:
                if c.get("iou") is None:
                    continue
                e = acc.setdefault(c["name"], {"kinds": set(), "iou": [], "noisy_iou": []})
                e["kinds"].add("thing" if c["thing"] else "stuff")
                e[key].append(100.0 * c["iou"])
    mean = lambda v: sum(v) / len(v) if v else None  # noqa: E731
    return {n: {"kind": "/".join(sorted(e["kinds"], reverse=True)), "iou": mean(e["iou"]), "runs": len(e["iou"]),
                "zero": sum(v == 0 for v in e["iou"]), "noisy_iou": mean(e["noisy_iou"]),
                "noisy_runs": len(e["noisy_iou"])} for n, e in sorted(acc.items())}


def format_per_class(classes: dict[str, dict]) -> str:
    f = lambda v: "-" if v is None else f"{v:.1f}"  # noqa: E731
    lines = ["| class | kind | IoU (mean over runs) | runs | runs at IoU 0 | noisy IoU |", "|---|---|---|---|---|---|"]
    for n, c in classes.items():
        lines.append(f"| {n} | {c['kind']} | {f(c['iou'])} | {c['runs']} | {c['zero']} | "
                     f"{f(c['noisy_iou'])} |")
    return "\n".join(lines) + "\n"


def format_table(rows: dict[str, dict], summary: dict[str, dict]) -> str:
    f = lambda v: "-" if v is None else f"{v:.1f}"  # noqa: E731
    lines = ["| scene, seed | PQ^scene | SQ | RQ | mIoU | EA | mesh F@5cm | test PSNR | depth err > 20 cm | "
             "noisy PQ^scene | noisy mIoU | noisy EA |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, r in list(rows.items()) + [("**mean**", summary["mean"]), ("**worst**", summary["worst"])]:
        lines.append(f"| {name} | " + " | ".join(f(r[k]) for k in METHOD_KEYS + NOISY_KEYS) + " |")
    return "\n".join(lines) + "\n"


def run_benchmark(tier: str, config: Path, root: Path, data: Path, overrides: list[str], parallel: int,
                  scenes: Optional[list[str]] = None, seeds: Optional[list[int]] = None) -> dict:
    """Train every scene-and-seed run of ``tier`` that is not finished and write the table."""
    if tier not in TIERS:
        raise SdfsegError(f"--tier: expected one of {', '.join(TIERS)}, got '{tier}'")
    t = TIERS[tier]
    scenes, seeds = list(scenes or t.scenes), list(seeds if seeds is not None else t.seeds)
    from ..config import load_config

    cfg = load_config(config, list(t.overrides) + list(overrides))  # validates the overrides before any work
    tier_dir = root / tier
    tier_dir.mkdir(parents=True, exist_ok=True)
    rooms_extra = room_overrides(cfg.model.num_channels)
    check_settings(tier_dir, {"config": str(config), "overrides": list(t.overrides) + list(overrides),
                              "room_overrides": rooms_extra})
    t0 = time.time()
    jobs, names = [], []
    for scene in scenes:
        path = ensure_scene(data, scene, config)
        extra = list(t.overrides) + (rooms_extra if scene.startswith("room") else []) + list(overrides)
        for seed in seeds:
            name = f"{scene}_s{seed}"
            names.append(name)
            run_dir = tier_dir / name
            if not finished(run_dir, cfg.render.export_mesh):
                jobs.append((name, run_command(config, path, run_dir, seed, extra)))
    seconds = run_jobs(jobs, parallel, tier_dir / "logs")
    rows = {n.replace("_s", ", seed "): row(tier_dir / n) for n in names}
    summary = summarize(rows)
    table = format_table(rows, summary)
    out_of_band = [n for n, r in rows.items() if n.startswith("room") and r["noisy_pq"] is not None
                   and not NOISY_PQ_BAND[0] <= r["noisy_pq"] <= NOISY_PQ_BAND[1]]
    classes = per_class([tier_dir / n for n in names])
    result = {"tier": tier, "config": str(config), "overrides": overrides, "rows": rows, "summary": summary,
              "per_class": classes, "seconds_this_call": time.time() - t0, "run_seconds": seconds,
              "noisy_pq_out_of_band": out_of_band}
    write_text_atomic(tier_dir / "per_class.md", format_per_class(classes))
    write_text_atomic(tier_dir / "table.md", table)
    write_json_atomic(tier_dir / "table.json", result)
    return result
