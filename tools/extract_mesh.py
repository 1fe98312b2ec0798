#!/usr/bin/env python
"""Export one watertight mesh per object of a trained run (world coordinates, vertex colours from the

The command line lives in sdfseg/cli/extract_mesh.py (installed as ``sdfseg-mesh``); ``--help`` describes it."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runnable from a source checkout

from sdfseg.cli.extract_mesh import console  # noqa: E402

if __name__ == "__main__":
    console()
