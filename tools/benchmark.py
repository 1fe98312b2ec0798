#!/usr/bin/env python
"""Measure training speed and memory for a config: iterations/s, rays/s, peak memory, time per loss term.

Runs on CUDA when present (train.device: auto), else on the CPU.

Example:
  python tools/benchmark.py confs/demo.yaml --iterations 50 --json bench.json
  python tools/benchmark.py confs/scannet.yaml --set data.path=... --iterations 200
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sdfseg.config import load_config  # noqa: E402
from sdfseg.errors import SdfsegError, run_cli  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("config")
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="config overrides")
    ap.add_argument("--iterations", type=int, default=50, help="timed training iterations (after 5 warm-up)")
    ap.add_argument("--json", default=None, help="also write the figures to this JSON file")
    args = ap.parse_args()
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


if __name__ == "__main__":
    run_cli(main)
