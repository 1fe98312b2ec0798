#!/usr/bin/env python
"""Quality benchmark: train a config on the demo scene and on rooms of the independent scene family,

The command line lives in sdfseg/cli/bench_quality.py; ``--help`` describes it."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runnable from a source checkout

from sdfseg.cli.bench_quality import console  # noqa: E402

if __name__ == "__main__":
    console()
