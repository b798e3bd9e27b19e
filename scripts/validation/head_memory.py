"""Peak CPU memory of one training forward + backward: plain head loss vs the chunked one.

    python scripts/validation/head_memory.py [--depth 2] [--batch 8] [--chunk-rows 1024]

At the official geometry (V = 4096, scales 1..16, L = 680, 1000 classes) and a VAR of
`--depth` (width 64 x depth), each variant runs in a fresh process:

  plain    logits = model(labels, x_in)  [B, L, V] float32, F.cross_entropy, backward
  chunked  model(labels, x_in, tokens)   (var_core.loss: chunks of --chunk-rows rows), backward

After one untimed step the process's peak resident set (VmHWM) is reset (writing 5 to
/proc/self/clear_refs) and the step runs again; the figure is VmHWM - VmRSS(before the step),
in MiB, with the size of the fp32 logits for reference. Linux only.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def child(variant: str, depth: int, batch: int, chunk_rows: int) -> dict:
    import torch
    import torch.nn.functional as F

    sys.path.insert(0, str(ROOT))
    import var_core.loss as loss_mod
    from var_core import VAR

    torch.set_num_threads(1)
    torch.manual_seed(0)
    loss_mod.CHUNK_ELEMENTS = chunk_rows * 4096
    model = VAR(depth, num_classes=1000, vocab_size=4096, z_channels=32, drop_path=0.0).train()
    B, L = batch, model.L
    labels = torch.randint(0, 1000, (B,))
    x_in = torch.randn(B, L - 1, 32)
    tokens = torch.randint(0, 4096, (B, L))

    def step():
        if variant == "plain":
            loss = F.cross_entropy(model(labels, x_in).flatten(0, 1), tokens.flatten())
        else:
            loss = model(labels, x_in, tokens)
        loss.backward()
        model.zero_grad(set_to_none=False)  # keep .grad allocated: it is not the head's cost
        return float(loss)

    step()
    before = _kib("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")
    loss = step()
    peak = _kib("VmHWM")
    return dict(
        variant=variant,
        depth=depth,
        batch=batch,
        L=L,
        loss=loss,
        peak_extra_mib=round((peak - before) / 1024, 1),
        logits_fp32_mib=round(B * L * 4096 * 4 / 2**20, 1),
    )


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--depth", type=int, default=2)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--chunk-rows", type=int, default=1024)
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.depth, args.batch, args.chunk_rows)))
        return 0
    rows = []
    for variant in ("plain", "chunked"):
        out = subprocess.run(
            [
                sys.executable,
                __file__,
                "--child",
                variant,
                "--depth",
                str(args.depth),
                "--batch",
                str(args.batch),
                "--chunk-rows",
                str(args.chunk_rows),
            ],
            capture_output=True,
            text=True,
            check=True,
            env=dict(os.environ),
        )
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    print(
        f"official geometry (V 4096, L {rows[0]['L']}), depth {args.depth}, batch {args.batch}, "
        f"chunk {args.chunk_rows} rows; fp32 logits {rows[0]['logits_fp32_mib']} MiB"
    )
    print("| head loss | peak extra RSS MiB (forward + backward) | loss |")
    print("|---|---|---|")
    for r in rows:
        print(f"| {r['variant']} | {r['peak_extra_mib']} | {r['loss']:.6f} |")
    print(
        f"saving: {rows[0]['peak_extra_mib'] - rows[1]['peak_extra_mib']:.1f} MiB "
        f"({rows[1]['peak_extra_mib'] / rows[0]['peak_extra_mib']:.2f}x of plain)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
