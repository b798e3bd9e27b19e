"""`var-scaling COMMAND ...`: one console entry point for every `python -m scaling.COMMAND`.

`pip install` (and so `scripts/setup.sh`) puts `var-scaling` into the environment's `bin/`
(`.venv/bin/var-scaling`), so it works from any shell without activating the environment.
`var-scaling fit runs/demo` is exactly `python -m scaling.fit runs/demo`: same arguments,
output, exit codes.

The commands are named by string and imported only when chosen, so that a torch-free command
(`status`, `fit`, `plan`) never pays for importing torch, and this module imports nothing of
the layers above it.
"""

from __future__ import annotations

import importlib
import sys

from scaling.core.cli import EXIT_INPUT

# command -> what it does (one line of `var-scaling --help`); the module is scaling.<command>
COMMANDS: dict[str, str] = {
    "launch": "run a sweep: prepare data, submit (SLURM or local), --wait, --dry-run",
    "status": "one table of every run of one or more sweeps (--watch, --json)",
    "fit": "power laws vs N and Cmin (or the joint L(N, D)), figures; two studies: compare",
    "plan": "what a sweep costs and how sharp its laws will be, before running it",
    "train": "train one run directory (what a launched job runs)",
    "sample_eval": "draw and score samples of trained runs",
    "synthetic": "write the synthetic image set of the demos",
    "train_vqvae": "train a multi-scale VQVAE on an image folder",
    "tokenize": "encode an image folder into a token store",
    "classifier": "train the demo's small classifier (its sample metric)",
    "tokenizer_quality": "measure a VQVAE: PSNR, code usage and entropy per scale, recon FD",
    "bench": "time the trainer, evaluation, sampler and tokenizer",
}


def usage() -> str:
    """The text of `var-scaling --help`: every command and its one-line summary."""
    width = max(map(len, COMMANDS))
    lines = [
        "usage: var-scaling COMMAND [ARGS...]   (same as: python -m scaling.COMMAND ARGS...)",
        "",
        "commands:",
    ]
    lines += [f"  {name:<{width}}  {what}" for name, what in COMMANDS.items()]
    lines += ["", "var-scaling COMMAND --help shows a command's arguments."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run `var-scaling COMMAND ARGS...`; returns the command's exit status (2: unknown)."""
    args = sys.argv[1:] if argv is None else list(argv)
    if not args or args[0] in ("-h", "--help", "help"):
        print(usage())
        return 0 if args else EXIT_INPUT
    name, rest = args[0].replace("-", "_"), args[1:]
    if name not in COMMANDS:
        close = [c for c in COMMANDS if c.startswith(name[:3])]
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        print(f"error: unknown command {args[0]!r}{hint}\n\n{usage()}", file=sys.stderr)
        return EXIT_INPUT
    module = importlib.import_module(f"scaling.{name}")
    return int(module.main(rest) or 0)
