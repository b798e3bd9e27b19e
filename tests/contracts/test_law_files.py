"""draws.json, optimal.json, compare.json and plan.json: their readers and writers against
files written out by hand here (current, old without schema_version, and bad ones whose error
must name the file, the field and, for broken JSON, the line)."""

from __future__ import annotations

import json

import pytest

from contracts import ContractError
from contracts.compare import read_compare, write_compare
from contracts.draws import DrawsFile, JointLawDraw, read_draws, write_draws
from contracts.optimal import read_optimal, write_optimal
from contracts.plan import read_plan, write_plan

DRAWS_V0 = """{
  "what": "the bootstrap's refitted laws",
  "draws": {
    "ce_avg": [
      {"E": 4.1, "A": 310.0, "alpha": 0.31, "B": 2100.0, "beta": 0.28},
      {"E": 4.0, "A": 290.5, "alpha": 0.30, "B": 1900, "beta": 0.27}
    ],
    "ce_last": []
  }
}
"""

OPTIMAL = """{
  "schema_version": 1,
  "tool": "python -m scaling.fit --optimal-for",
  "created_utc": "2026-12-07T12:00:00Z",
  "source": "runs/demo_wsd",
  "joint_fit": {"folder": "runs/demo_wsd/fit-nd", "how": "reused the joint fit"},
  "optimal_for": {
    "C": 1e13, "metric": "ce_avg", "N": 4100000.0, "N_ci": [3200000.0, 5500000.0],
    "D": 240000000.0, "D_ci": null, "D_unit": "tokens", "images": 890000.0,
    "dataset_images": 1200, "epochs": 741.6,
    "nearest_depth": {"depth": 4, "width": 256, "heads": 4, "params": 4210688,
                      "rule": "width 64 x depth"},
    "predicted_loss": 4.61, "extrapolation": 3.2
  }
}
"""

COMPARE_V0 = """{
  "tool": "python -m scaling.fit A B",
  "created_utc": "2026-12-07T12:00:00Z",
  "studies": {
    "A": {"name": "v256", "source": "runs/v256", "fits": "c/v256/fits.json", "bootstrap_seed": 0},
    "B": {"name": "v128", "source": "runs/v128", "fits": "c/v128/fits.json", "bootstrap_seed": 1}
  },
  "conventions": {"difference": "alpha_B - alpha_A"},
  "warnings": ["the studies were fitted with different settings: ci"],
  "differences": [
    {"metric": "ce_avg", "against": "N", "alpha_a": -0.2, "alpha_b": -0.26,
     "alpha_a_ci": [-0.22, -0.18], "alpha_b_ci": null, "delta": -0.06,
     "delta_ci": [-0.08, -0.04], "share_below_zero": 1.0, "draws": 200, "level": 0.95,
     "differs": true},
    {"metric": "err_last", "against": "Cmin", "alpha_a": -0.05, "alpha_b": -0.05,
     "alpha_a_ci": null, "alpha_b_ci": null, "delta": 0.0, "delta_ci": null,
     "share_below_zero": null, "draws": 0, "level": 0.95, "differs": null}
  ]
}
"""

PLAN_V0 = """{
  "tool": "python -m scaling.plan",
  "sweep": "sweeps/demo.yaml",
  "elapsed_s": 2.5,
  "cost": {
    "runs": [
      {"run": "d2", "parent": null, "params": 1234, "steps": 100, "start_step": 0,
       "tokens": 68000, "D_tokens": 68000, "train_flops": 5.0e11, "eval_flops": 1.0e10,
       "full_evals": 3, "gpu_hours": 0.001, "eval_compute": [1.0e11, 3.0e11, 5.0e11]},
      {"run": "d2-b0.4", "parent": "d2", "params": 1234, "steps": 60, "start_step": 40,
       "tokens": 40800, "D_tokens": 68000, "train_flops": 3.0e11, "eval_flops": 5.0e9,
       "full_evals": 1, "gpu_hours": 0.0005, "eval_compute": [5.0e11]}
    ],
    "total_train_flops": 8.0e11, "total_eval_flops": 1.5e10, "total_gpu_hours": 0.0015,
    "assumed_tflops_per_gpu": 300.0, "token_store_bytes": 1100000, "store_meta_real": false
  },
  "precision": [{"metric": "ce_last", "against": "N", "prior_alpha": -0.21, "coverage": 0.94}],
  "joint": {"planned": false, "why_not": "no branches"}
}
"""


def write(tmp_path, name: str, text: str):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_draws_read_as_written_by_hand_and_rewritten_with_a_version(tmp_path):
    draws = read_draws(write(tmp_path, "draws.json", DRAWS_V0))
    assert draws.schema_version == 0  # written before the contract: read the same
    assert draws.draws["ce_avg"][1] == JointLawDraw(E=4.0, A=290.5, alpha=0.30, B=1900.0, beta=0.27)
    assert draws.draws["ce_last"] == ()
    write_draws(tmp_path / "new.json", draws)
    doc = json.loads((tmp_path / "new.json").read_text())
    assert list(doc)[0] == "schema_version" and doc["schema_version"] == 1
    assert doc["draws"]["ce_avg"][0] == {
        "E": 4.1,
        "A": 310.0,
        "alpha": 0.31,
        "B": 2100.0,
        "beta": 0.28,
    }
    assert read_draws(tmp_path / "new.json") == DrawsFile(draws.draws)


@pytest.mark.parametrize(
    "text, message",
    [
        (
            DRAWS_V0.replace('"beta": 0.27', '"beta": "x"'),
            r"draws\.ce_avg\[1\]\.beta: expected a number",
        ),
        (DRAWS_V0.replace('"A": 310.0, ', ""), r"draws\.ce_avg\[0\]\.A: missing"),
        ('{"schema_version": 2, "draws": {}}', r"schema_version: this code reads 0 to 1, got 2"),
        ('{"laws": {}}', r"draws\.json: draws: missing"),
        (DRAWS_V0.replace('"ce_last": []', '"ce_last": [1]'), r"draws\.ce_last: expected a list"),
    ],
)
def test_a_bad_draws_file_names_the_file_and_field(tmp_path, text, message):
    with pytest.raises(ContractError, match=message) as e:
        read_draws(write(tmp_path, "draws.json", text))
    assert str(e.value).startswith(str(tmp_path / "draws.json"))


def test_broken_json_names_its_line_and_a_missing_file_says_so(tmp_path):
    torn = DRAWS_V0.replace('"alpha": 0.30,', '"alpha": 0.30')  # the 6th line
    with pytest.raises(ContractError, match=r"draws\.json:6: not JSON") as e:
        read_draws(write(tmp_path, "draws.json", torn))
    assert e.value.line == 6
    with pytest.raises(ContractError, match="no such file"):
        read_optimal(tmp_path / "optimal.json")
    with pytest.raises(ContractError, match="expected a JSON object"):
        read_plan(write(tmp_path, "plan.json", "[1, 2]"))


def test_optimal_reads_every_typed_field_and_round_trips(tmp_path):
    optimal = read_optimal(write(tmp_path, "optimal.json", OPTIMAL))
    a = optimal.answer
    assert (a.C, a.metric, a.N_ci, a.D_ci, a.dataset_images) == (
        1e13,
        "ce_avg",
        (3.2e6, 5.5e6),
        None,
        1200,
    )
    assert (a.nearest_depth.depth, a.nearest_depth.params) == (4, 4210688)
    assert (optimal.joint_folder, optimal.source) == ("runs/demo_wsd/fit-nd", "runs/demo_wsd")
    write_optimal(tmp_path / "again.json", optimal)
    assert json.loads((tmp_path / "again.json").read_text()) == json.loads(OPTIMAL)


@pytest.mark.parametrize(
    "old, new, message",
    [
        (
            '"N_ci": [3200000.0, 5500000.0]',
            '"N_ci": [3200000.0]',
            r"optimal_for\.N_ci: expected \[lo, hi\]",
        ),
        (
            '"dataset_images": 1200',
            '"dataset_images": 12.5',
            r"optimal_for\.dataset_images: expected a whole",
        ),
        ('"heads": 4, ', "", r"optimal_for\.nearest_depth\.heads: missing"),
        ('"how": "reused the joint fit"', '"how": 3', r"joint_fit\.how: expected a string"),
        ('"C": 1e13', '"C": true', r"optimal_for\.C: expected a number"),
    ],
)
def test_a_bad_optimal_file_names_the_field(tmp_path, old, new, message):
    assert old in OPTIMAL
    with pytest.raises(ContractError, match=message):
        read_optimal(write(tmp_path, "optimal.json", OPTIMAL.replace(old, new)))


def test_an_old_compare_file_reads_with_its_intervals_and_nulls(tmp_path):
    compare = read_compare(write(tmp_path, "compare.json", COMPARE_V0))
    assert compare.schema_version == 0
    assert (compare.a.name, compare.b.bootstrap_seed) == ("v256", 1)
    first, second = compare.differences
    assert (first.delta_ci, first.alpha_b_ci, first.differs) == ((-0.08, -0.04), None, True)
    assert (second.share_below_zero, second.differs, second.draws) == (None, None, 0)
    assert compare.warnings == ("the studies were fitted with different settings: ci",)
    write_compare(tmp_path / "new.json", compare)
    doc = json.loads((tmp_path / "new.json").read_text())
    assert doc["schema_version"] == 1
    assert {k: v for k, v in doc.items() if k != "schema_version"} == json.loads(COMPARE_V0)


@pytest.mark.parametrize(
    "old, new, message",
    [
        ('"delta": -0.06', '"delta": "-0.06"', r"differences\[0\]\.delta: expected a number"),
        ('"differs": null', '"differs": "no"', r"differences\[1\]\.differs: expected true, false"),
        (
            '"bootstrap_seed": 1',
            '"bootstrap_seed": -1',
            r"studies\.B\.bootstrap_seed: expected a whole",
        ),
        ('"warnings": [', '"warnings": [3, ', r"warnings: expected a list of strings"),
    ],
)
def test_a_bad_compare_file_names_the_field(tmp_path, old, new, message):
    assert old in COMPARE_V0
    with pytest.raises(ContractError, match=message):
        read_compare(write(tmp_path, "compare.json", COMPARE_V0.replace(old, new)))


def test_an_old_plan_reads_typed_costs_and_keeps_the_rest(tmp_path):
    plan = read_plan(write(tmp_path, "plan.json", PLAN_V0))
    assert plan.schema_version == 0 and plan.sweep == "sweeps/demo.yaml"
    d2, branch = plan.cost.runs
    assert (branch.parent, branch.start_step, branch.eval_compute) == ("d2", 40, (5.0e11,))
    assert d2.parent is None and d2.full_evals == 3 and plan.cost.store_meta_real is False
    assert plan.cost.total_train_flops == d2.train_flops + branch.train_flops
    assert plan.precision[0]["prior_alpha"] == -0.21
    assert plan.details["joint"] == {"planned": False, "why_not": "no branches"}
    write_plan(tmp_path / "new.json", plan)
    doc = json.loads((tmp_path / "new.json").read_text())
    assert doc.pop("schema_version") == 1 and doc == json.loads(PLAN_V0)


@pytest.mark.parametrize(
    "old, new, message",
    [
        (
            '"params": 1234, "steps": 60',
            '"params": 1.5, "steps": 60',
            r"cost\.runs\[1\]\.params: expected a whole",
        ),
        (
            '"eval_compute": [5.0e11]',
            '"eval_compute": [null]',
            r"cost\.runs\[1\]\.eval_compute\[0\]: expected a number",
        ),
        (
            '"store_meta_real": false',
            '"store_meta_real": 0',
            r"cost\.store_meta_real: expected true or false",
        ),
        ('"metric": "ce_last", ', "", r"precision\[0\]\.metric: missing"),
        ('"sweep": "sweeps/demo.yaml",', "", r"plan\.json: sweep: missing"),
    ],
)
def test_a_bad_plan_names_the_field(tmp_path, old, new, message):
    assert old in PLAN_V0
    with pytest.raises(ContractError, match=message):
        read_plan(write(tmp_path, "plan.json", PLAN_V0.replace(old, new)))
