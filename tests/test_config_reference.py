"""docs/configuration.md and docs/fitting.md's settings tables are generated from the code
(the configuration dataclasses, the fit command's flags) and must match it."""

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


def test_fitting_settings_table_matches_the_fit_settings_and_flags():
    """docs/fitting.md's generated block: a FitSettings field or a fit flag added, removed or
    re-commented without rerunning the script fails here; the prose around it is kept."""
    generator = _generator()
    committed = (ROOT / "docs" / "fitting.md").read_text()
    assert committed == generator.spliced(committed, generator.render_fit_options()), (
        "docs/fitting.md's settings tables are out of date: run "
        "python scripts/figures/config_reference.py"
    )
    assert "## The irreducible loss E" in committed  # the prose after the block is still there


def test_fitting_table_lists_each_setting_once_with_its_default():
    """Against the dataclass itself: every FitSettings field is a row of docs/fitting.md
    (once, with its default), and the fit flags that are not settings are listed."""
    import dataclasses

    from analysis.settings import FitSettings

    text = (ROOT / "docs" / "fitting.md").read_text()
    table = text.split("| fit.yaml key (`--set KEY=VALUE`) |")[1].split("\n\n")[0]
    for f in dataclasses.fields(FitSettings):
        assert table.count(f"\n| `{f.name}` |") == 1, f.name
    assert "| `holdout` | int | `-1` | k largest model sizes left out" in text
    assert "| `bootstrap` | int | `1000` |" in text
    for flag in ("`--no-plots`", "`--optimal-for C`", "`--dataset-images N`"):
        assert f"| {flag} |" in text
