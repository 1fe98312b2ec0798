#!/usr/bin/env python
"""Train sdfseg on a scene, then render the test views, evaluate them and export per-object meshes.

The command line lives in sdfseg/cli/train.py (installed as ``sdfseg-train``); ``--help`` describes it."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runnable from a source checkout

from sdfseg.cli.train import console  # noqa: E402

if __name__ == "__main__":
    console()
