#!/usr/bin/env python
"""Click queries on a run's hierarchical feature head: score maps and masks in 2D, segments in 3D.

The command line lives in sdfseg/cli/query.py (installed as ``sdfseg-query``); ``--help`` describes it."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runnable from a source checkout

from sdfseg.cli.query import console  # noqa: E402

if __name__ == "__main__":
    console()
