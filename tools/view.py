#!/usr/bin/env python
"""Look at a finished run in the browser (viser).

The command line lives in sdfseg/cli/view.py (installed as ``sdfseg-view``); ``--help`` describes it."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runnable from a source checkout

from sdfseg.cli.view import console  # noqa: E402

if __name__ == "__main__":
    console()
