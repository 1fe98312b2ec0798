"""Argument helpers shared by every command-line tool in ``tools/``.

One definition of the options several tools take, so they behave the same everywhere:
``--set KEY=VALUE`` (repeatable; every occurrence accumulates), ``--no-progress`` and
``--overwrite``. Errors are reported by :func:`sdfseg.errors.run_cli`.
"""

from __future__ import annotations

import argparse

SET_HELP = ("override config keys, e.g. --set train.iterations=2000 run.dir=runs/x; repeatable: every --set "
            "adds its KEY=VALUE pairs (a key given twice takes the last value)")


def add_set_option(parser: argparse.ArgumentParser, help: str = SET_HELP) -> None:
    """``--set KEY=VALUE [KEY=VALUE ...]``, repeatable: all occurrences are collected in order in ``args.set``."""
    parser.add_argument("--set", nargs="+", action="extend", default=[], metavar="KEY=VALUE", help=help)


def add_progress_option(parser: argparse.ArgumentParser) -> None:
    """``--no-progress``: no progress bars; long stages print a plain status line now and then instead."""
    parser.add_argument("--no-progress", action="store_true",
                        help="no progress bars: print a plain status line every 30 s instead (for batch-job logs; "
                             "also the behaviour when the output is not a terminal)")


def add_overwrite_option(parser: argparse.ArgumentParser) -> None:
    """``--overwrite``: replace a run that already exists in the run directory (its outputs are cleared first)."""
    parser.add_argument("--overwrite", action="store_true",
                        help="the run directory already holds a run: delete its outputs and start afresh")
