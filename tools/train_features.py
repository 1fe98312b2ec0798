#!/usr/bin/env python
"""Train a hierarchical feature head on the frozen backbone of a trained run (head-only stage).

The command line lives in sdfseg/cli/train_features.py (installed as ``sdfseg-train-features``); ``--help`` describes it."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runnable from a source checkout

from sdfseg.cli.train_features import console  # noqa: E402

if __name__ == "__main__":
    console()
