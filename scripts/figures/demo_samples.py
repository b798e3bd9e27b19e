"""The demo's sample quality by model size, with the two floors that make it readable.

    .venv/bin/python scripts/figures/demo_samples.py runs/demo                  # runs/demo/readme/
    .venv/bin/python scripts/figures/demo_samples.py runs/demo --out docs/img   # update the docs

Reads each run's sample-quality line (written by `scaling.sample_eval` after training) and
measures, with the same classifier and the same val reference:

- "train images": 50 training images per class (real images, not the val ones): what a
  perfect sampler would score with this many samples;
- "VQVAE reconstructions": the same training images encoded and decoded by the demo's
  VQVAE: the best a VAR on these tokens could score.

Prints a Markdown table and writes `demo_samples_vs_N.png` and `demo_samples.md` into `--out`
(default RUNS/readme/: a tracked file only when asked), and the two floors into
RUNS/_data/sample_floors.json, where `var-scaling fit` finds them for its samples_vs_N figure.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from analysis import results  # noqa: E402
from contracts.atomic import atomic_write_json  # noqa: E402
from scaling.core.cli import InputError, run_cli, setup_logging  # noqa: E402
from scaling.data.images import ImageFolder  # noqa: E402
from scaling.study.sweep.spec import DATA_DIR  # noqa: E402
from scaling.training.config import load_run_config  # noqa: E402
from scaling.training.sample_eval import compute_metrics, load_reference  # noqa: E402
from scaling.training.sample_features import ClassifierFeatures  # noqa: E402
from scaling.training.trained_models import load_store_vqvae  # noqa: E402


def _train_images(root: Path, size: int, per_class: int) -> tuple[torch.Tensor, np.ndarray]:
    ds = ImageFolder(root, size, train=False)
    picked = []
    for c in range(len(ds.classes)):
        picked += [i for i, (_, lab) in enumerate(ds.samples) if lab == c][:per_class]
    x = torch.stack([ds.load(i) for i in picked])
    return x, ds.labels[picked]


def _uint8(x: torch.Tensor) -> np.ndarray:
    return ((x + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()


def main(argv: list[str] | None = None) -> None:
    """Measure the two floors, print the table and write the figure and demo_samples.md."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("runs", nargs="?", default="runs/demo", help="the finished demo's runs folder")
    p.add_argument("--out", help="where the figure and table go (default RUNS/readme)")
    args = p.parse_args(argv)
    runs = Path(args.runs)
    out = Path(args.out) if args.out else runs / "readme"
    table = results.read_runs(runs)
    rows = table[table["sample_acc"].notna()].sort_values("params")
    if rows.empty:
        raise InputError(
            f"{runs}: no sample-quality lines; run python -m scaling.sample_eval on the runs"
        )
    cfg = load_run_config(runs / rows.iloc[0]["run"] / "config.yaml")
    net = ClassifierFeatures(cfg.samples.classifier)
    ref = load_reference(cfg.samples.reference, net, net.image_size, None)
    per_class = int(rows.iloc[0]["sample_per_class"])
    x, labels = _train_images(
        Path(cfg.samples.reference).parent / "train", net.image_size, per_class
    )
    vqvae = load_store_vqvae(cfg.data.store)
    with torch.no_grad():
        recon = vqvae.idx_to_img(vqvae.img_to_idx(x))
    floors = {
        "train images": compute_metrics(_uint8(x), labels, ref, net, "classifier"),
        "VQVAE reconstructions": compute_metrics(_uint8(recon), labels, ref, net, "classifier"),
    }
    lines = ["| run | N | class accuracy | Frechet distance | ce_last |", "|---|---|---|---|---|"]
    for _, r in rows.iterrows():
        lines.append(
            f"| {r['run']} | {int(r['params']):,} | {r['sample_acc']:.3f} | {r['sample_fd']:.2f} "
            f"| {r['ce_last']:.3f} |"
        )
    for name, m in floors.items():
        lines.append(f"| {name} | | {m['sample_acc']:.3f} | {m['sample_fd']:.2f} | |")
    text = "\n".join(lines) + "\n"
    print(text)
    print(
        f"{len(x)} samples per row ({per_class} per class, cfg {rows.iloc[0]['sample_cfg']}, "
        f"top-k {int(rows.iloc[0]['sample_top_k'])}, top-p {rows.iloc[0]['sample_top_p']}); "
        "reference: "
        f"{ref['n']} val images; classifier val accuracy {net.meta['val_accuracy']:.3f}"
    )
    fig, axes = plt.subplots(1, 2, figsize=(8.4, 3.2))
    n = rows["params"].to_numpy(float)
    for ax, col, label in (
        (axes[0], "sample_acc", "class accuracy of samples"),
        (axes[1], "sample_fd", "Frechet distance to val (classifier features)"),
    ):
        ax.plot(n, rows[col], "o-", label="VAR samples")
        for (name, m), style in zip(floors.items(), (":", "--")):
            ax.axhline(m[col], color="0.4", ls=style, lw=1, label=name)
        for xi, yi, run in zip(n, rows[col], rows["run"]):
            ax.annotate(run, (xi, yi), textcoords="offset points", xytext=(3, 3), fontsize=7)
        ax.set_xscale("log")
        ax.set_xlabel("N (parameters)")
        ax.set_title(label, fontsize=9)
        ax.grid(True, which="both", alpha=0.25)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    out.mkdir(parents=True, exist_ok=True)
    fig.savefig(out / "demo_samples_vs_N.png", dpi=150, bbox_inches="tight")
    (out / "demo_samples.md").write_text(text)
    atomic_write_json(
        runs / DATA_DIR / "sample_floors.json",
        {
            "what": "sample metrics of real training images and of their VQVAE reconstructions "
            "(same classifier, same val reference, as many images as each run's samples)",
            "floors": {
                name: {k: float(m[k]) for k in ("sample_acc", "sample_fd")}
                for name, m in floors.items()
            },
        },
    )
    print(
        f"wrote {out}/demo_samples_vs_N.png, demo_samples.md, {runs / DATA_DIR}/sample_floors.json",
        file=sys.stderr,
    )


if __name__ == "__main__":
    setup_logging()
    sys.exit(run_cli(lambda: main(), input_errors=(results.ResultsError,)))
