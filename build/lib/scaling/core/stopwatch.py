"""A stopwatch for a job's own working time: it runs while the job works and pauses while
something that is not counted (an evaluation) runs; resumable from a saved total.

    watch = Stopwatch(elapsed=state["wall_s"]).start()   # resume from a checkpoint
    ...one step...
    with watch.paused():
        evaluate()
    state["wall_s"] = watch.elapsed

Torch-free: the VAR trainer and the VQVAE trainer both use it.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator


class Stopwatch:
    """Seconds accumulated while running (`elapsed`), starting from a saved total."""

    def __init__(self, elapsed: float = 0.0, *, clock: Callable[[], float] = time.perf_counter):
        self._clock = clock
        self._total = float(elapsed)  # seconds accumulated up to the last start (or stop)
        self._since: float | None = None  # clock reading at the last start; None = stopped

    @property
    def running(self) -> bool:
        """Whether time is being counted now."""
        return self._since is not None

    @property
    def elapsed(self) -> float:
        """Seconds counted so far, including the current running stretch."""
        if self._since is None:
            return self._total
        return self._total + self._clock() - self._since

    def start(self) -> Stopwatch:
        """Count from now on (no-op if running); returns the stopwatch."""
        if self._since is None:
            self._since = self._clock()
        return self

    def stop(self) -> float:
        """Stop counting (no-op if stopped); returns `elapsed`."""
        if self._since is not None:
            self._total += self._clock() - self._since
            self._since = None
        return self._total

    @contextlib.contextmanager
    def paused(self) -> Iterator[Stopwatch]:
        """Not counting inside the block; counting again after it if it was running before."""
        was_running = self.running
        self.stop()
        try:
            yield self
        finally:
            if was_running:
                self.start()
