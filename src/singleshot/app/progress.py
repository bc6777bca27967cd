"""The command line's rendering of library progress: a tqdm bar on a terminal, a plain line every
10% (or every 30 s) in logs, notes as ``note: ...`` lines; all on stderr."""

from __future__ import annotations

import sys
import time

from ..progress import Progress


class ConsoleProgress(Progress):
    """``log_every``: in logs (no terminal), a line every N steps instead of every 10%."""

    def __init__(self, enabled: bool = True, stream=None, log_every: int | None = None) -> None:
        self.enabled, self.stream, self.log_every = enabled, stream or sys.stderr, log_every
        self.bar = None
        self.task, self.total, self.count, self.unit, self.last = "", None, 0, "it", 0.0

    def start(self, task: str, total: int | None = None, unit: str = "it") -> None:
        self.task, self.total, self.count, self.unit = task, total, 0, unit
        self.last = time.monotonic()
        if self.enabled and self.stream.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=task, unit=unit, file=self.stream,
                            dynamic_ncols=True, leave=False, unit_scale=unit == "B",
                            unit_divisor=1024 if unit == "B" else 1000)

    def advance(self, n: int = 1, status: str | None = None) -> None:
        self.count += n
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.update(n)
            if status:
                self.bar.set_postfix_str(status, refresh=False)
            return
        now = time.monotonic()
        step = self.log_every or max(1, (self.total or 0) // 10)
        if ((self.total or self.log_every) and self.count % step == 0) or now - self.last >= 30:
            self.last = now
            of = f"/{self.total}" if self.total else ""
            print(f"{self.task}: {self.count}{of} {self.unit}" + (f" ({status})" if status else ""),
                  file=self.stream, flush=True)

    def done(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def note(self, message: str) -> None:
        self.log(f"note: {message}")

    def log(self, message: str) -> None:
        if self.bar is not None:
            self.bar.write(message, file=self.stream)
        else:
            print(message, file=self.stream, flush=True)
