#!/usr/bin/env python
"""Evaluate predicted label maps of a scene's test frames (PQ^scene, mIoU, edge accuracy, F-score).

The command line lives in sdfseg/cli/evaluate.py (installed as ``sdfseg-eval``); ``--help`` describes it."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runnable from a source checkout

from sdfseg.cli.evaluate import console  # noqa: E402

if __name__ == "__main__":
    console()
