"""User-facing errors.

Every problem with user input (files, folders, config keys, values) is raised as
:class:`SdfsegError` with a one-line message that names the offending file or key
and what was expected. The command-line tools print ``error: <message>`` and exit
with status 2; no traceback is shown for these. An ``OSError`` that reaches a tool
(a read-only output folder, a full disk) is reported the same way, naming its file.
"""

from __future__ import annotations

import sys
from typing import Callable


class SdfsegError(Exception):
    """A problem with user input, reported as one line without a traceback."""


def os_error_message(exc: OSError) -> str:
    """One line for an ``OSError``: ``<file>: <reason>`` (the file when the error names one)."""
    reason = exc.strerror or str(exc) or type(exc).__name__
    files = [str(f) for f in (exc.filename, exc.filename2) if f is not None]
    return f"{' -> '.join(files)}: {reason}" if files else reason


def run_cli(main: Callable[[], int | None]) -> None:
    """Run a CLI entry point, turning :class:`SdfsegError` and ``OSError`` into a one-line error and exit 2."""
    try:
        code = main()
    except SdfsegError as exc:
        _fail(str(exc))
    except OSError as exc:
        _fail(os_error_message(exc))
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        sys.exit(130)
    sys.exit(code or 0)


def _fail(message: str) -> None:
    msg = " ".join(message.split())
    print(f"error: {msg}", file=sys.stderr)
    sys.exit(2)
