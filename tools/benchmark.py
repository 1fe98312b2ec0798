#!/usr/bin/env python
"""Measure training speed and memory for a config: iterations/s, rays/s, peak memory, time per loss term.

The command line lives in sdfseg/cli/benchmark.py; ``--help`` describes it."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runnable from a source checkout

from sdfseg.cli.benchmark import console  # noqa: E402

if __name__ == "__main__":
    console()
