#!/usr/bin/env python
"""Reproduce the paper's Table 2 (instance mode) on a scene: baselines and ClusteringSDF ablations.

The command line lives in sdfseg/cli/table2.py; ``--help`` describes it."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runnable from a source checkout

from sdfseg.cli.table2 import console  # noqa: E402

if __name__ == "__main__":
    console()
