#!/usr/bin/env python
"""Measure training speed and memory for a config: iterations/s, rays/s, peak memory, time per loss term.

Runs on CUDA when present (train.device: auto), else on the CPU.

With --mask-hierarchy (no config needed): peak memory and time of turning one image's
multi-granular masks (synthetic, SAM-like) into the feature head's patch hierarchy.

Example:
  python tools/benchmark.py confs/demo.yaml --iterations 50 --json bench.json
  python tools/benchmark.py confs/scannet.yaml --set data.path=... --iterations 200
  python tools/benchmark.py --mask-hierarchy 1000 968 1296
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sdfseg.cli import add_set_option  # noqa: E402
from sdfseg.config import load_config  # noqa: E402
from sdfseg.errors import SdfsegError, run_cli  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("config", nargs="?", default=None, help="config to benchmark training with")
    add_set_option(ap)
    ap.add_argument("--iterations", type=int, default=50, help="timed training iterations (after 5 warm-up)")
    ap.add_argument("--json", default=None, help="also write the figures to this JSON file")
    ap.add_argument("--mask-hierarchy", nargs=3, type=int, default=None, metavar=("MASKS", "H", "W"),
                    help="measure the mask hierarchy of MASKS masks of H x W instead of training")
    args = ap.parse_args()
    if args.mask_hierarchy is not None:
        return mask_hierarchy(args.mask_hierarchy, args.json)
    if args.config is None:
        raise SdfsegError("expected a config file (e.g. confs/demo.yaml) or --mask-hierarchy MASKS H W")
    if args.iterations < 1:
        raise SdfsegError(f"--iterations: expected >= 1, got {args.iterations}")
    cfg = load_config(args.config, args.set)
    cfg.run.dir = str(Path(cfg.run.dir) / "benchmark")
    from sdfseg.benchmark import benchmark
    from sdfseg.io import write_json_atomic

    r = benchmark(cfg, iterations=args.iterations)
    print(f"device {r['device']} ({r['torch_threads']} threads), K = {r['num_channels']}, "
          f"hash grid backend {r['hash_backend']}")
    print(f"{r['iterations_per_second']:.2f} it/s, {r['rays_per_second']:.0f} rays/s "
          f"({r['rays_per_iteration']} rays/it), peak memory {r['peak_memory_mb']:.0f} MiB")
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
    from sdfseg.benchmark import mask_hierarchy_memory
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


if __name__ == "__main__":
    run_cli(main)
