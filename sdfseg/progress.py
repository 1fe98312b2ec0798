"""Progress reporting for long stages: a bar on a terminal, plain status lines in logs.

``Progress(total, "train", enabled)`` shows a tqdm bar when ``enabled`` and standard error
is a terminal. Otherwise (``--no-progress``, or output redirected to a batch-job log) it
prints one plain line now and then (every ``interval`` seconds, and when the stage ends):
``train: 150/2000 loss 0.1234 psnr 21.30 | 4.12 it/s, eta 7m29s``.
"""

from __future__ import annotations

import sys
import time
from typing import Iterable, Iterator, Optional, TypeVar

from tqdm import tqdm

T = TypeVar("T")

STATUS_INTERVAL = 30.0
"""Seconds between two plain status lines."""


def format_duration(seconds: float) -> str:
    """``4h02m``, ``7m29s`` or ``12s``."""
    s = int(round(max(0.0, seconds)))
    if s >= 3600:
        return f"{s // 3600}h{(s % 3600) // 60:02d}m"
    if s >= 60:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s}s"


class Progress:
    """Progress of one stage of ``total`` steps (see the module docstring)."""

    def __init__(self, total: int, desc: str, enabled: bool = True, initial: int = 0, unit: str = "it",
                 interval: float = STATUS_INTERVAL):
        self.total, self.desc, self.unit, self.interval = int(total), desc, unit, interval
        self.count = self.start = int(initial)
        self.status: dict[str, str] = {}
        self.t0 = self.last = time.monotonic()
        self.bar: Optional[tqdm] = None
        if enabled and sys.stderr.isatty():
            self.bar = tqdm(total=total, initial=initial, desc=desc, unit=unit, dynamic_ncols=True)

    def update(self, n: int = 1, **status: object) -> None:
        """Advance by ``n``; ``status`` (name -> value) is shown from now on (floats with 4 significant digits)."""
        self.count += n
        if status:
            self.status = {k: f"{v:.4g}" if isinstance(v, float) else str(v) for k, v in status.items()}
        if self.bar is not None:
            if status:
                self.bar.set_postfix(self.status, refresh=False)
            self.bar.update(n)
        elif time.monotonic() - self.last >= self.interval and self.count < self.total:
            self.print_line()

    def line(self) -> str:
        """The plain status line of the current state."""
        elapsed = time.monotonic() - self.t0
        done = self.count - self.start
        rate = done / elapsed if elapsed > 0 else 0.0
        parts = [f"{self.desc}: {self.count}/{self.total}"] + [f"{k} {v}" for k, v in self.status.items()]
        tail = f"{rate:.2f} {self.unit}/s"
        if self.count < self.total and rate > 0:
            tail += f", eta {format_duration((self.total - self.count) / rate)}"
        else:
            tail += f", {format_duration(elapsed)}"
        return " ".join(parts) + " | " + tail

    def print_line(self) -> None:
        print(self.line(), flush=True)
        self.last = time.monotonic()

    def close(self) -> None:
        """End the stage: close the bar, or print the final status line."""
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        elif self.count > self.start:
            self.print_line()

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def progress_iter(items: Iterable[T], desc: str, enabled: bool = True, total: Optional[int] = None,
                  unit: str = "it") -> Iterator[T]:
    """Iterate ``items`` while reporting progress (a bar or status lines, see :class:`Progress`)."""
    items = list(items) if total is None else items
    with Progress(len(items) if total is None else total, desc, enabled, unit=unit) as p:  # type: ignore[arg-type]
        for item in items:
            yield item
            p.update()
