"""The notebooks run top to bottom on a small sweep made during the test run."""

from __future__ import annotations

import nbformat
import pytest
import torch
import yaml
from nbclient import NotebookClient

from scaling.data.classifier import train_classifier
from scaling.data.synthetic import generate
from scaling.data.tokenize import tokenize
from scaling.training.config import (
    DataConfig,
    EvalConfig,
    LengthConfig,
    ModelConfig,
    OptimConfig,
    RunConfig,
    RuntimeConfig,
    SamplesConfig,
)
from scaling.training.job import train_run
from scaling.training.sample_eval import evaluate_run
from tests.factories import write_run
from tests.paths import ROOT
from var_core import VQVAE, save_model

NOTEBOOKS = ROOT / "notebooks"


@pytest.fixture(scope="module")
def small_sweep(tmp_path_factory):
    """synthetic 16px images -> tiny VQVAE -> token store -> 3 trained sizes + fit.yaml."""
    root = tmp_path_factory.mktemp("sweep")
    generate(
        root / "images", num_classes=3, train_per_class=16, val_per_class=4, resolution=16, seed=0
    )
    torch.manual_seed(0)
    vqvae = VQVAE(
        vocab_size=32,
        z_channels=8,
        ch=32,
        ch_mult=(1, 2, 2),
        num_res_blocks=1,
        patch_nums=(1, 2, 4),
    )
    save_model(root / "vqvae.pt", vqvae)
    tokenize(root / "images", root / "vqvae.pt", root / "tokens", batch_size=16, device="cpu")
    train_classifier(root / "images", root / "classifier.pt", epochs=1, width=8, feature_dim=8)
    samples = SamplesConfig(
        per_class=4,
        features="classifier",
        classifier=str(root / "classifier.pt"),
        reference=str(root / "images" / "val"),
    )
    runs = root / "runs"
    for depth in (1, 2, 3):
        config = RunConfig(
            run_id=f"d{depth}",
            data=DataConfig(store=root / "tokens"),
            model=ModelConfig(depth=depth, width=16 * depth, heads=depth),
            optim=OptimConfig(batch_size=16, base_lr=0.05),
            length=LengthConfig(steps=12),
            eval=EvalConfig(points=3, first_frac=0.25),
            runtime=RuntimeConfig(num_threads=1),
        )
        train_run(write_run(runs / config.run_id, config))
        evaluate_run(runs / config.run_id, samples)  # sample-quality lines for the plots
    (runs / "fit.yaml").write_text(yaml.safe_dump({"irreducible": "none", "bootstrap": 50}))
    return runs


@pytest.mark.parametrize("name", ["scaling_laws.ipynb", "samples.ipynb"])
def test_notebook_runs_top_to_bottom(name, small_sweep, monkeypatch):
    monkeypatch.setenv("VAR_RUNS_DIR", str(small_sweep))
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    NotebookClient(
        nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOKS)}}
    ).execute()
    outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]
    assert not [o for o in outputs if o.output_type == "error"]
    assert any(o.output_type in ("display_data", "execute_result") for o in outputs)
    # every cell that makes figures shows them: one PNG per figure it creates (a plotting
    # module that forced a non-interactive backend would leave these cells without images)
    figure_cells = 0
    for cell in nb.cells:
        made = (
            cell.source.count("plots.plot_") + cell.source.count("plt.subplots(")
            if cell.cell_type == "code"
            else 0
        )
        if made:
            figure_cells += 1
            images = [o for o in cell.get("outputs", []) if "image/png" in o.get("data", {})]
            assert len(images) == made, (
                f"{name}: a figure cell shows {len(images)} of its {made} figures:\n{cell.source}"
            )
    assert figure_cells >= 2
