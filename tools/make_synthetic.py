#!/usr/bin/env python
"""Generate a procedural synthetic scene with exact ground truth in the Panoptic Lifting layout.

The command line lives in sdfseg/cli/make_synthetic.py; ``--help`` describes it."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runnable from a source checkout

from sdfseg.cli.make_synthetic import console  # noqa: E402

if __name__ == "__main__":
    console()
