"""The launcher's progress lines while it waits for local jobs: one line whenever something
changed, relaying every preparation stage's and run's progress from their status files: a
summary of the run states, then only what changed (so a line fits a terminal with 16 runs)."""

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
        seen: dict[str, str] = {}
        while not stop.wait(every_s):
            line, seen = progress_update(sweep, seen)
            if line is not None:
                minutes, seconds = divmod(int(time.monotonic() - t0), 60)
                log(f"[{minutes:2d}m{seconds:02d}s] {line}")

    thread = threading.Thread(target=report, name="launch-progress", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def progress_update(sweep: Sweep, seen: dict[str, str]) -> tuple[str | None, dict[str, str]]:
    """(line, parts): a line that fits a terminal, or None when nothing changed since `seen`
    (the parts of the previous call): a summary of the run states, then only the stage and
    the runs whose part changed ('3 of 16 done, 2 running, 11 queued | d6 37% ETA 4m05s')."""
    parts = _parts(sweep)
    if parts == seen:
        return None, seen
    counts: dict[str, int] = {}
    for key, part in parts.items():
        if key != "prepare":
            state = part.split(" ", 1)[1].split(" ", 1)[0]
            state = "running" if state.endswith("%") else state
            counts[state] = counts.get(state, 0) + 1
    total = sum(counts.values())
    order = ("done", "running", "queued", "pending", "failed", "stopped")
    summary = ", ".join(
        f"{counts[k]}" + (f" of {total}" if i == 0 else "") + f" {k}"
        for i, k in enumerate(sorted(counts, key=lambda k: order.index(k) if k in order else 9))
    )
    waiting = ("queued", "pending")  # a first line names none of them: the summary counts them
    changed = [
        p
        for key, p in parts.items()
        if seen.get(key) != p and (seen or p.rsplit(" ", 1)[-1] not in waiting)
    ]
    return " | ".join([summary, *changed]), parts


def progress_line(sweep: Sweep) -> str:
    """'prepare: vqvae running [200/500 steps, ..., PSNR 19.8 dB] | d1 done (ce_avg 3.412) |
    d2 57% ETA 1m10s | d3 queued ...'."""
    return " | ".join(_parts(sweep).values())


def _parts(sweep: Sweep) -> dict[str, str]:
    """'prepare' and each run id -> its part of the progress line."""
    parts = {}
    stages = stage_summary(sweep)
    if stages and any(s in stages for s in ("running", "queued", "pending", "failed")):
        parts["prepare"] = f"prepare: {stages}"
    for run in sweep.runs:
        status = RunDir(run.run_dir).status()
        state, final = status.state, status.final
        if state == "running" and status.total_steps:
            eta_s = status.fields.get("eta_s")
            eta = f" ETA {duration(eta_s)}" if isinstance(eta_s, (int, float)) else ""
            parts[run.run_id] = (
                f"{run.run_id} {100 * (status.step or 0) / status.total_steps:.0f}%{eta}"
            )
        elif state == "done" and final is not None and "ce_avg" in final.metrics:
            parts[run.run_id] = f"{run.run_id} done (ce_avg {final.metrics['ce_avg']:.3f})"
        else:
            parts[run.run_id] = f"{run.run_id} {state}"
    return parts
