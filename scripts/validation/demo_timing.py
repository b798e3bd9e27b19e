"""The demo study end to end, two code versions side by side, quiet and beside busy processes.

    python scripts/validation/demo_timing.py --old /tmp/old --old-python /tmp/old/.venv/bin/python \
        [--new .] [--new-python .venv/bin/python] [--loads 0 2] [--out demo_timing.json]

For each load (the number of extra CPU-bound processes, `python -c "while True: pass"`,
started beside the demo and stopped after it) and each version (alternating which goes
first), runs `python -m scaling.launch <demo sweep> --backend local` from that version's
tree, with the sweep's output in a fresh temporary folder, and records:

  wall       seconds of the whole launch (synthetic images, VQVAE, tokenize, 6 VAR runs)
  stages     seconds of each stage (from the stage and run status files: started/finished)
  metrics    each run's last evaluation (ce_avg, ce_last, err_avg, err_last)
  load       the 1-minute load average before and after (os.getloadavg)

Prints a Markdown table (ratios new/old at each load, loaded/quiet per version, and the
largest metric difference between the versions) and writes everything to --out (JSON).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
from contracts.metrics import METRICS, read_metrics  # noqa: E402 (after the path)
from contracts.status import read_status  # noqa: E402

STAGES = ("synthetic", "vqvae", "tokenize")


def _status(path: Path) -> dict:
    return read_status(path).as_dict()


def demo_once(tree: Path, python: str, sweep: Path, load: int, timeout_s: float) -> dict:
    """One end-to-end demo from `tree` with `load` busy processes beside it."""
    with tempfile.TemporaryDirectory(prefix="demo-timing-") as tmp:
        out = Path(tmp) / "runs" / "demo"
        text = sweep.read_text()
        if "\noutput: runs/demo\n" not in text:
            raise SystemExit(f"{sweep}: expected the line 'output: runs/demo'")
        spec = Path(tmp) / "demo.yaml"
        spec.write_text(text.replace("\noutput: runs/demo\n", f"\noutput: {out}\n"))
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("OMP_", "MKL_", "SLURM_", "SUBMITIT_"))
        }
        burners = [
            subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(load)
        ]
        load_before = os.getloadavg()[0]
        t0 = time.time()
        # its own session: on a time-out the launcher and every job it started are stopped
        proc = subprocess.Popen(
            [python, "-m", "scaling.launch", str(spec), "--backend", "local"],
            cwd=tree,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        try:
            output, _ = proc.communicate(timeout=timeout_s)
            code, tail = proc.returncode, output[-1500:]
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            code, tail = None, f"timed out after {timeout_s:.0f} s"
        wall = time.time() - t0
        for b in burners:
            b.kill()
            b.wait()
        record = dict(
            tree=str(tree),
            load=load,
            wall_s=round(wall, 1),
            returncode=code,
            load_before=round(load_before, 2),
            load_after=round(os.getloadavg()[0], 2),
            stages={},
            runs={},
            finished=time.strftime("%H:%M:%S"),
        )
        for stage in STAGES:
            st = _status(
                out / "_data" / "jobs" / stage / "status.json"
            )  # scaling.study.sweep.sweep.DATA_DIR
            if "started_at" in st and "finished_at" in st:
                record["stages"][stage] = round(st["finished_at"] - st["started_at"], 1)
            elif "started_at" in st:  # still running when the demo stopped
                record["stages"][stage] = f">{time.time() - st['started_at']:.0f} (unfinished)"
        starts, ends = [], []
        for run_dir in sorted((out).glob("d*")):
            st = _status(run_dir / "status.json")
            lines = read_metrics(run_dir / "metrics.jsonl")
            last = lines[-1].columns() if lines else {}
            record["runs"][run_dir.name] = {k: last.get(k) for k in METRICS}
            if "started_at" in st and "finished_at" in st:
                starts.append(st["started_at"])
                ends.append(st["finished_at"])
                record["runs"][run_dir.name]["seconds"] = round(
                    st["finished_at"] - st["started_at"], 1
                )
        if starts:
            record["stages"]["train (span of the 6 runs)"] = round(max(ends) - min(starts), 1)
        if code != 0:
            record["tail"] = tail
        return record


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--old", type=Path, required=True, help="worktree of the old commit")
    p.add_argument("--old-python", required=True, help="its python (a venv importing that tree)")
    p.add_argument("--new", type=Path, default=ROOT)
    p.add_argument("--new-python", default=str(ROOT / ".venv" / "bin" / "python"))
    p.add_argument("--sweep", type=Path, default=ROOT / "sweeps" / "demo.yaml")
    p.add_argument("--loads", type=int, nargs="+", default=[0, 2])
    p.add_argument("--timeout-min", type=float, default=90.0, help="per demo")
    p.add_argument(
        "--sides",
        nargs="+",
        choices=("old", "new"),
        default=["old", "new"],
        help="which versions to run (default both)",
    )
    p.add_argument(
        "--first",
        choices=("old", "new"),
        default="old",
        help="which version runs first at the first load (then they alternate)",
    )
    p.add_argument("--out", type=Path, default=Path("demo_timing.json"))
    args = p.parse_args()
    sides = {
        "old": (args.old.resolve(), args.old_python),
        "new": (args.new.resolve(), args.new_python),
    }
    results = []
    for i, load in enumerate(args.loads):
        order = ("old", "new") if (i % 2 == 0) == (args.first == "old") else ("new", "old")
        for side in (s for s in order if s in args.sides):
            tree, python = sides[side]
            print(f"[{time.strftime('%H:%M:%S')}] {side} ({tree}), load {load} ...", flush=True)
            rec = demo_once(tree, python, args.sweep, load, 60 * args.timeout_min)
            rec["side"] = side
            results.append(rec)
            print(json.dumps(rec), flush=True)
            args.out.write_text(json.dumps(results, indent=1))
    print(
        "\n| version | extra busy processes | wall s | "
        + " | ".join([*STAGES, "train (span of the 6 runs)"])
        + " | load avg before/after |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for r in results:
        cells = [str(r["stages"].get(s, "-")) for s in (*STAGES, "train (span of the 6 runs)")]
        wall = f"{r['wall_s']}" + ("" if r["returncode"] == 0 else f" (exit {r['returncode']})")
        print(
            f"| {r['side']} | {r['load']} | {wall} | "
            + " | ".join(cells)
            + f" | {r['load_before']} / {r['load_after']} |"
        )
    by = {(r["side"], r["load"]): r for r in results}
    for load in args.loads:
        if ("old", load) in by and ("new", load) in by:
            print(
                f"new / old wall at load {load}: "
                f"{by['new', load]['wall_s'] / by['old', load]['wall_s']:.3f}"
            )
    for side in sides:
        quiet = by.get((side, min(args.loads)))
        for load in args.loads:
            if load != min(args.loads) and quiet and (side, load) in by:
                print(
                    f"{side}: load {load} / load {min(args.loads)} wall: "
                    f"{by[side, load]['wall_s'] / quiet['wall_s']:.3f}"
                )
    for load in args.loads:
        if ("old", load) in by and ("new", load) in by:
            a, b = by["old", load]["runs"], by["new", load]["runs"]
            diffs = [
                abs(a[r][m] - b[r][m])
                for r in a
                if r in b
                for m in METRICS
                if a[r].get(m) is not None and b[r].get(m) is not None
            ]
            if diffs:
                print(
                    f"load {load}: largest |new - old| over runs and {', '.join(METRICS)}: "
                    f"{max(diffs):.4f}"
                )
    print(f"\nwritten to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
