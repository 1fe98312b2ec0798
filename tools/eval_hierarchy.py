#!/usr/bin/env python
"""Score hierarchical feature-head runs against a synthetic scene's GT part / object / group maps.

The command line lives in sdfseg/cli/eval_hierarchy.py (installed as ``sdfseg-eval-hierarchy``); ``--help`` describes it."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runnable from a source checkout

from sdfseg.cli.eval_hierarchy import console  # noqa: E402

if __name__ == "__main__":
    console()
