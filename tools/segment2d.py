#!/usr/bin/env python
"""Make per-frame 2D labels for a scene with SAM, Mask2Former or a weight-free classical segmenter.

The command line lives in sdfseg/cli/segment2d.py (installed as ``sdfseg-segment2d``); ``--help`` describes it."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runnable from a source checkout

from sdfseg.cli.segment2d import console  # noqa: E402

if __name__ == "__main__":
    console()
