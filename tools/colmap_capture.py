#!/usr/bin/env python
"""A synthetic COLMAP capture to try the COLMAP path end to end, and scoring a run of it against GT.

The command line lives in sdfseg/cli/colmap_capture.py; ``--help`` describes it."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runnable from a source checkout

from sdfseg.cli.colmap_capture import console  # noqa: E402

if __name__ == "__main__":
    console()
