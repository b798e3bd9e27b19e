"""docs/configuration.md is generated from the configuration dataclasses and must match them."""

from __future__ import annotations

import importlib.util

from tests.paths import ROOT


def _generator():
    path = ROOT / "scripts" / "figures" / "config_reference.py"
    spec = importlib.util.spec_from_file_location("config_reference", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_configuration_reference_matches_the_dataclasses():
    """A field added, removed, retyped or re-commented in code without rerunning
    `python scripts/figures/config_reference.py` fails here."""
    committed = (ROOT / "docs" / "configuration.md").read_text()
    assert committed == _generator().render(), (
        "docs/configuration.md is out of date: run python scripts/figures/config_reference.py"
    )


def test_reference_lists_fields_with_their_comments_and_defaults():
    """Spot checks against the source of the dataclasses, read independently of the generator's
    parsing: a key from each section, with its default and its field comment."""
    text = (ROOT / "docs" / "configuration.md").read_text()
    assert "| `optim.base_lr` | float | `0.0001` |" in text
    assert "| `runtime.tf32` | bool \\| null | `null` | TF32 for fp32 matmuls/convs" in text
    assert "| `cluster.tasks_per_node` | int | `0` | 0: one per GPU (one on CPUs) |" in text
    assert "| `method` | `ols` \\| `robust` | `ols` |" in text  # FitSettings
    assert "| `eval_images` | int | `500` | val images used for MSE/PSNR/usage |" in text
