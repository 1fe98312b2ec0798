#!/usr/bin/env python
"""Generate a furnished room of the independent scene family (triangle meshes, ray-cast with Embree)

The command line lives in sdfseg/cli/make_room.py; ``--help`` describes it."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runnable from a source checkout

from sdfseg.cli.make_room import console  # noqa: E402

if __name__ == "__main__":
    console()
