#!/usr/bin/env python
"""Prompt an object of a trained run (SANeRF-HQ): clicks in -> its mask in every test view and its own mesh.

The command line lives in sdfseg/cli/prompt.py (installed as ``sdfseg-prompt``); ``--help`` describes it."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runnable from a source checkout

from sdfseg.cli.prompt import console  # noqa: E402

if __name__ == "__main__":
    console()
