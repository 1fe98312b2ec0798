"""Measure training speed and memory for a config: iterations/s, rays/s, peak memory, time per loss term.

Runs on CUDA when present (train.device: auto), else on the CPU.

With --mask-hierarchy (no config needed): peak memory and time of turning one image's
multi-granular masks (synthetic, SAM-like) into the feature head's patch hierarchy.

With --scene-memory (no config needed): writes a Panoptic-Lifting-layout scene of FRAMES
frames of H x W (colour, depth, normals, noisy m2f and GT labels, confidences) to a
temporary folder, loads it in a child process as training does (reader, normalisation,
training labels, ray sampler on the CPU) and reports the child's peak resident memory
and load time, with the bytes of the scene's arrays and what they would take in float32.
--scene-dir keeps (and reuses) the generated scene; --code measures another checkout.

Example:
  python tools/benchmark.py confs/demo.yaml --iterations 50 --json bench.json
  python tools/benchmark.py confs/scannet.yaml --set data.path=... --iterations 200
  python tools/benchmark.py confs/demo.yaml --render-view
  python tools/benchmark.py --compare-renderers runs/demo
  python tools/benchmark.py --mask-hierarchy 1000 968 1296
  python tools/benchmark.py --scene-memory 1000 480 640
"""

from __future__ import annotations

import argparse
from pathlib import Path

from sdfseg.cli.options import add_set_option
from sdfseg.config import load_config
from sdfseg.errors import SdfsegError, run_cli


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("config", nargs="?", default=None, help="config to benchmark training with")
    add_set_option(ap)
    ap.add_argument("--iterations", type=int, default=50, help="timed training iterations (after 5 warm-up)")
    ap.add_argument("--json", default=None, help="also write the figures to this JSON file")
    ap.add_argument("--mask-hierarchy", nargs=3, type=int, default=None, metavar=("MASKS", "H", "W"),
                    help="measure the mask hierarchy of MASKS masks of H x W instead of training")
    ap.add_argument("--render-view", action="store_true",
                    help="after the timed iterations also time rendering the first test view (render.renderer)")
    ap.add_argument("--compare-renderers", default=None, metavar="RUN",
                    help="re-render the test views of the finished run RUN with the volume and the surface "
                         "renderer into RUN/renderers/: time, metrics and agreement of both")
    ap.add_argument("--scene-memory", nargs=3, type=int, default=None, metavar=("FRAMES", "H", "W"),
                    help="measure the peak memory of loading a scene of FRAMES frames of H x W instead of training")
    ap.add_argument("--scene-dir", default=None,
                    help="--scene-memory: write the scene here and keep it (reused when it holds the same size)")
    ap.add_argument("--code", default=None,
                    help="--scene-memory: root of another sdfseg checkout whose loader to measure (default: this one)")
    args = ap.parse_args()
    if args.mask_hierarchy is not None:
        return mask_hierarchy(args.mask_hierarchy, args.json)
    if args.compare_renderers is not None:
        return compare_renderers(Path(args.compare_renderers), args.set, args.json)
    if args.scene_memory is not None:
        return scene_memory(args.scene_memory, args.scene_dir, args.code, args.json)
    if args.config is None:
        raise SdfsegError("expected a config file (e.g. confs/demo.yaml), --mask-hierarchy MASKS H W or "
                          "--scene-memory FRAMES H W")
    if args.iterations < 1:
        raise SdfsegError(f"--iterations: expected >= 1, got {args.iterations}")
    cfg = load_config(args.config, args.set)
    cfg.run.dir = str(Path(cfg.run.dir) / "benchmark")
    from sdfseg.apps.benchmark import benchmark
    from sdfseg.io import write_json_atomic

    r = benchmark(cfg, iterations=args.iterations, render_view=args.render_view)
    print(f"device {r['device']} ({r['torch_threads']} threads), K = {r['num_channels']}, "
          f"hash grid backend {r['hash_backend']}")
    print(f"{r['iterations_per_second']:.2f} it/s, {r['rays_per_second']:.0f} rays/s "
          f"({r['rays_per_iteration']} rays/it), peak memory {r['peak_memory_mb']:.0f} MiB")
    if "render" in r:
        v = r["render"]
        print(f"render ({v['renderer']}): {v['rays_per_second']:.0f} rays/s, {v['seconds_per_view']:.2f} s per "
              f"{v['hw'][0]} x {v['hw'][1]} view (+ {v['grid_seconds']:.2f} s scene grid once), "
              f"{100 * v['fallback_share']:.1f}% rays on the full renderer")
    print("seconds per call on one batch:")
    for k, v in sorted(r["per_term_seconds"].items(), key=lambda kv: -kv[1]):
        print(f"  {k:<28}{v * 1000:9.1f} ms")
    if args.json:
        write_json_atomic(args.json, r)
    return 0


def mask_hierarchy(spec: list[int], json_path: str | None) -> int:
    n, h, w = spec
    if n < 1 or h < 1 or w < 1:
        raise SdfsegError(f"--mask-hierarchy: expected positive MASKS H W, got {n} {h} {w}")
    from sdfseg.apps.benchmark import mask_hierarchy_memory
    from sdfseg.io import write_json_atomic

    r = mask_hierarchy_memory(n, h, w)
    mib = lambda b: b / 2**20
    print(f"{r['num_masks']} masks of {h} x {w}: {r['patches']} patches")
    print(f"packed masks {mib(r['maskset_bytes']):.1f} MiB (peak while packing {mib(r['pack_peak_bytes']):.1f} MiB, "
          f"{r['pack_seconds']:.1f} s)")
    print(f"hierarchy build: peak {mib(r['build_peak_bytes']):.1f} MiB, kept {mib(r['hierarchy_bytes']):.1f} MiB, "
          f"{r['build_seconds']:.1f} s; a dense [M, H, W] bool array would be {mib(r['dense_bytes']):.0f} MiB")
    if json_path:
        write_json_atomic(json_path, r)
    return 0


def compare_renderers(run: Path, overrides: list[str], json_path: str | None) -> int:
    from sdfseg.apps.render_bench import compare_renderers as compare
    from sdfseg.io import write_json_atomic
    from sdfseg.training.rundir import RunLock

    if not (run / "config.yaml").exists():
        raise SdfsegError(f"--compare-renderers: {run}: not a run folder (no config.yaml)")
    with RunLock(run, "tools/benchmark.py --compare-renderers"):
        r = compare(run, run / "renderers", overrides=overrides)
    print(f"{r['views']} test views of {r['hw'][0]} x {r['hw'][1]} on {r['device']} ({r['torch_threads']} threads)")
    print(f"{'renderer':<9}{'rays/s':>9}{'+ grid':>9}{'fallback':>10}{'PQ':>7}{'mIoU':>7}{'EA':>7}")
    for k in ("volume", "surface"):
        v, m = r[k], r[k]["metrics"]
        print(f"{k:<9}{v['rays_per_second']:9.0f}{v['rays_per_second_with_grid']:9.0f}{100 * v['fallback_share']:9.1f}%"
              + "".join(f"{100 * m[x]:7.1f}" if x in m else "      -" for x in ("pq", "miou", "ea")))
    a = r["agreement"]
    print(f"same instance id on {100 * a['instance']:.2f}% of pixels, same class on {100 * a['semantic']:.2f}%")
    if json_path:
        write_json_atomic(json_path, r)
    return 0


def scene_memory(spec: list[int], scene_dir: str | None, code: str | None, json_path: str | None) -> int:
    n, h, w = spec
    if n < 1 or h < 8 or w < 8:
        raise SdfsegError(f"--scene-memory: expected FRAMES >= 1 and H, W >= 8, got {n} {h} {w}")
    from sdfseg.apps.scene_memory import scene_memory as measure
    from sdfseg.io import write_json_atomic

    r = measure(n, h, w, scene_dir=scene_dir, code=code)
    gib = lambda b: b / 2**30
    print(f"{n} frames of {h} x {w}: peak RSS {gib(r['peak_rss_bytes']):.2f} GiB "
          f"({gib(r['maxrss_imports']):.2f} GiB after imports), load {r['load_seconds']:.1f} s; "
          f"scene arrays {gib(r['scene_bytes']):.2f} GiB (float32 storage: {gib(r['float32_scene_bytes']):.2f} GiB); "
          f"scene written in {r['generate_seconds']:.1f} s")
    if json_path:
        write_json_atomic(json_path, r)
    return 0


def console() -> None:
    """Console entry point."""
    run_cli(main)


if __name__ == "__main__":
    console()
