"""The launcher's progress lines while it waits for local jobs: one line whenever something
changed, relaying every preparation stage's and run's progress from their status files."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator

from scaling.core.rundir import RunDir
from scaling.core.tables import duration
from scaling.study.run.prepare import stage_summary
from scaling.study.sweep.sweep import Sweep


@contextlib.contextmanager
def reporting(sweep: Sweep, log: Callable[[str], None], every_s: float = 15.0) -> Iterator[None]:
    """While the block runs (the launcher waiting for local jobs), `log` a progress line
    every `every_s` seconds when it changed; a thread of its own, stopped on exit."""
    stop = threading.Event()
    t0 = time.monotonic()

    def report() -> None:
        last = None
        while not stop.wait(every_s):
            line = progress_line(sweep)
            if line != last:
                minutes, seconds = divmod(int(time.monotonic() - t0), 60)
                log(f"[{minutes:2d}m{seconds:02d}s] {line}")
                last = line

    thread = threading.Thread(target=report, name="launch-progress", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def progress_line(sweep: Sweep) -> str:
    """'prepare: vqvae running [200/500 steps, ..., PSNR 19.8 dB] | d1 done (ce_avg 3.412) |
    d2 57% ETA 1m10s | d3 queued ...'."""
    parts = []
    stages = stage_summary(sweep)
    if stages and any(s in stages for s in ("running", "queued", "pending", "failed")):
        parts.append(f"prepare: {stages}")
    for run in sweep.runs:
        rec = RunDir(run.run_dir).read_status()
        state = rec.get("state", "pending")
        if state == "running" and rec.get("total_steps"):
            eta = (
                f" ETA {duration(rec['eta_s'])}"
                if isinstance(rec.get("eta_s"), (int, float))
                else ""
            )
            parts.append(f"{run.run_id} {100 * rec.get('step', 0) / rec['total_steps']:.0f}%{eta}")
        elif state == "done" and isinstance(rec.get("final", {}).get("ce_avg"), float):
            parts.append(f"{run.run_id} done (ce_avg {rec['final']['ce_avg']:.3f})")
        else:
            parts.append(f"{run.run_id} {state}")
    return " | ".join(parts)
