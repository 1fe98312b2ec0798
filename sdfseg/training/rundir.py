"""The run directory: one process at a time, finished runs never replaced silently.

:class:`RunLock` holds an exclusive ``flock`` on ``RUN/.lock`` for as long as a tool
writes into the run (training, end-of-run rendering, mesh export). The kernel drops the
lock when the process dies, even by ``kill -9``, so ``--resume`` after a kill just
works, while a second process refuses with a one-line error naming the holder's pid.
Under the lock, temporaries a killed writer left behind (see :func:`sdfseg.io.is_temporary`)
are deleted.

:func:`prepare_fresh_run` protects a directory that already holds a run: a fresh run
there needs ``--overwrite``, which deletes the old run's outputs first (no stale
``meshes/object_*.ply`` or metrics of another run remain).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Optional

from ..config import Config, load_config
from ..errors import SdfsegError
from ..io import remove_temporaries

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX: runs are not locked
    fcntl = None  # type: ignore[assignment]

LOCK_FILE = ".lock"

RUN_OUTPUTS = ("config.yaml", "checkpoints", "tb", "channels.json", "ownership.npz", "test", "metrics.json",
               "meshes", "query")
"""What a run writes into its directory (tools/train.py, tools/train_features.py, tools/query.py)."""


class RunLock:
    """Exclusive lock on a run directory for the lifetime of a process (a context manager).

    ``purpose`` (e.g. ``"tools/train.py"``) is written into the lock file so that a refused
    second process can say who holds the run.
    """

    def __init__(self, run_dir: str | Path, purpose: str):
        self.run_dir = Path(run_dir)
        self.purpose = purpose
        self._fd: Optional[int] = None

    def __enter__(self) -> "RunLock":
        lock = self.run_dir / LOCK_FILE
        self._created = not self.run_dir.exists()
        try:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise SdfsegError(f"{self.run_dir}: cannot write the run directory ({exc.strerror or exc})") from None
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.read(fd, 200).decode("utf-8", "replace").strip() or "another process"
                os.close(fd)
                raise SdfsegError(f"{self.run_dir}: the run directory is in use by {holder}; wait for it to end "
                                  "or choose another run.dir") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} ({self.purpose})\n".encode(), 0)
        self._fd = fd
        remove_temporaries(self.run_dir)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._fd is None:
            return
        os.ftruncate(self._fd, 0)
        if self._created and os.listdir(self.run_dir) == [LOCK_FILE]:  # a run that stopped before writing
            os.unlink(self.run_dir / LOCK_FILE)                          # anything leaves no folder behind
            self.run_dir.rmdir()
        os.close(self._fd)  # closing the descriptor releases the flock
        self._fd = None


def read_run_config(run_dir: str | Path, overrides: Optional[list[str]] = None,
                    missing: str = "expected a run directory written by tools/train.py") -> Config:
    """The config of the run in ``run_dir`` with ``overrides`` (``KEY=VALUE``); a one-line error
    (``<dir>/config.yaml: not found (<missing>)``) when there is none."""
    cfg_file = Path(run_dir) / "config.yaml"
    if not cfg_file.is_file():
        raise SdfsegError(f"{cfg_file}: not found ({missing})")
    return load_config(cfg_file, overrides)


def existing_outputs(run_dir: str | Path) -> list[str]:
    """Names of the run outputs (:data:`RUN_OUTPUTS`) present in ``run_dir``."""
    run_dir = Path(run_dir)
    return [name for name in RUN_OUTPUTS if (run_dir / name).exists()]


def clear_outputs(run_dir: str | Path) -> None:
    """Delete every run output (:data:`RUN_OUTPUTS`) in ``run_dir``; other files are left alone."""
    run_dir = Path(run_dir)
    for name in RUN_OUTPUTS:
        p = run_dir / name
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        elif p.exists() or p.is_symlink():
            p.unlink()


def prepare_fresh_run(run_dir: str | Path, overwrite: bool, key: str = "run.dir") -> None:
    """Make ``run_dir`` ready for a fresh run (call it under the :class:`RunLock`).

    A directory that already holds a run is refused with a one-line error unless ``overwrite``,
    which deletes that run's outputs first.
    """
    found = existing_outputs(run_dir)
    if not found:
        return
    if not overwrite:
        raise SdfsegError(f"{key} '{run_dir}' already holds a run ({', '.join(found)}): use --resume to continue "
                          "or re-render it, --overwrite to delete it and start afresh, or choose another "
                          f"{key}")
    print(f"--overwrite: deleting the previous run's outputs in {run_dir} ({', '.join(found)})")
    clear_outputs(run_dir)
