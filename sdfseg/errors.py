"""User-facing errors.

Every problem with user input (files, folders, config keys, values) is raised as
:class:`SdfsegError` with a one-line message that names the offending file or key
and what was expected. The command-line tools print ``error: <message>`` and exit
with status 2; no traceback is shown for these.
"""

from __future__ import annotations

import sys
from typing import Callable


class SdfsegError(Exception):
    """A problem with user input, reported as one line without a traceback."""


def run_cli(main: Callable[[], int | None]) -> None:
    """Run a CLI entry point, turning :class:`SdfsegError` into a one-line error and exit 2."""
    try:
        code = main()
    except SdfsegError as exc:
        msg = " ".join(str(exc).split())
        print(f"error: {msg}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        sys.exit(130)
    sys.exit(code or 0)
