"""fits.json: its reader and writer against files written out by hand here."""

from __future__ import annotations

import json

import pytest

from contracts import ContractError
from contracts.fits import (
    ComputeModelFit,
    FitsFile,
    JointLawFit,
    PowerLawFit,
    read_fits,
    write_fits,
)

POWER = """{
  "schema_version": 1,
  "tool": "python -m scaling.fit",
  "source": "runs/demo",
  "settings": {
    "seed": 0,
    "ci": 0.95
  },
  "created_utc": "2026-12-07T12:00:00Z",
  "warnings": [],
  "elapsed_s": 1.5,
  "fits": [
    {
      "metric": "ce_last",
      "against": "N",
      "E": 4.5,
      "alpha": -0.2,
      "alpha_ci": [
        -0.25,
        -0.15
      ],
      "beta": 3.0,
      "r": -0.99
    },
    {
      "metric": "ce_last",
      "against": "Cmin",
      "E": 4.5,
      "alpha": -0.1,
      "beta": 100.0
    }
  ]
}
"""
JOINT = """{
  "schema_version": 1,
  "tool": "python -m scaling.fit --law nd",
  "law": "nd",
  "joint": [
    {
      "metric": "ce_avg",
      "E": 5.0,
      "A": 2000.0,
      "alpha": 0.35,
      "B": 40000.0,
      "beta": 0.3,
      "D_unit": "training images"
    }
  ]
}
"""

# a joint law as the joint-law fit writes it: its bootstrap and compute model, which
# --optimal-for reads back to rebuild the fit (other fields trimmed)
JOINT_RUN = """{
  "schema_version": 1,
  "joint": [
    {
      "metric": "ce_last",
      "E": 4.0, "A": 300.0, "alpha": 0.3, "B": 2000.0, "beta": 0.25,
      "D_unit": "training tokens",
      "ci": {"level": 0.9, "bootstrap_samples": 200, "bootstrap_valid": 198},
      "compute_model": {"form": "C = k N^gamma D", "k": 5.5, "gamma": 1.02,
                        "max_rel_error_on_runs": 0.03},
      "holdout": null,
      "points": []
    }
  ]
}
"""


def test_a_joint_laws_bootstrap_and_compute_model_are_typed(tmp_path):
    path = tmp_path / "fits.json"
    path.write_text(JOINT_RUN)
    law = read_fits(path).joint_laws()["ce_last"]
    assert (law.level, law.bootstrap_samples) == (0.9, 200)
    assert law.compute_model == ComputeModelFit(k=5.5, gamma=1.02, max_rel_error_on_runs=0.03)
    assert law.as_dict()["ci"] == {"level": 0.9, "bootstrap_samples": 200, "bootstrap_valid": 198}
    assert law.as_dict()["compute_model"]["form"] == "C = k N^gamma D"
    old = JointLawFit.from_record(
        {"metric": "ce_avg", "E": 1, "A": 2, "alpha": 0.3, "B": 4, "beta": 0.2}
    )
    assert old.compute_model is None and old.level is None and "ci" not in old.as_dict()


def test_round_trip_of_a_hand_written_power_law_file(tmp_path):
    path = tmp_path / "fits.json"
    path.write_text(POWER)
    fits = read_fits(path)
    assert fits.tool == "python -m scaling.fit" and fits.settings["seed"] == 0
    n, c = fits.laws()[("ce_last", "N")], fits.laws()[("ce_last", "Cmin")]
    assert (n.alpha, n.beta, n.E, c.alpha, c.beta) == (-0.2, 3.0, 4.5, -0.1, 100.0)
    assert n.record["alpha_ci"] == [-0.25, -0.15] and fits.joint is None
    copy = tmp_path / "copy.json"
    write_fits(copy, fits)
    assert copy.read_text() == POWER


def test_round_trip_of_a_hand_written_joint_law_file(tmp_path):
    path = tmp_path / "fits.json"
    path.write_text(JOINT)
    fits = read_fits(path)
    law = fits.joint_laws()["ce_avg"]
    assert (law.E, law.A, law.alpha, law.B, law.beta) == (5.0, 2000.0, 0.35, 40000.0, 0.3)
    assert law.d_unit == "images" and not fits.fits and fits.details["law"] == "nd"
    copy = tmp_path / "copy.json"
    write_fits(copy, fits)
    assert copy.read_text() == JOINT


def test_an_old_unversioned_file_reads_as_version_0(tmp_path):
    path = tmp_path / "fits.json"
    path.write_text(
        '{"fits": [{"metric": "err_last", "against": "N", "alpha": -0.02, "beta": 5, "E": 0}]}'
    )
    fits = read_fits(path)
    assert fits.schema_version == 0 and fits.tool is None
    assert fits.laws()[("err_last", "N")] == PowerLawFit(
        "err_last", "N", -0.02, 5.0, 0.0, record=json.loads(path.read_text())["fits"][0]
    )
    written = tmp_path / "new.json"
    write_fits(written, fits)
    assert json.loads(written.read_text())["schema_version"] == 1


@pytest.mark.parametrize(
    "text, message",
    [
        ("{not json", r"fits\.json: not a fits\.json written by scaling\.fit \(Expecting"),
        ('{"law": "nd"}', r"fits\.json: not a fits\.json .*neither 'fits' nor 'joint'"),
        ('{"fits": {"a": 1}}', r"fits\.json: .*fits: expected a list of laws"),
        (
            '{"fits": [{"metric": "ce_avg", "against": "N", "beta": 1, "E": 0}]}',
            r"fits\[0\]\.alpha",
        ),
        (
            '{"joint": [{"metric": "ce_avg", "E": 1, "A": "x"}]}',
            r"joint\[0\]\.A: expected a number",
        ),
        ('{"schema_version": 5, "fits": []}', r"schema_version: .* got 5"),
        (
            JOINT_RUN.replace('"gamma": 1.02', '"gamma": null'),
            r"joint\[0\]\.compute_model\.gamma: expected a number",
        ),
        (
            JOINT_RUN.replace('"bootstrap_samples": 200', '"bootstrap_samples": 2.5'),
            r"joint\[0\]\.ci\.bootstrap_samples: expected a count",
        ),
    ],
)
def test_an_unreadable_fits_json_is_an_error_naming_file_and_field(tmp_path, text, message):
    path = tmp_path / "fits.json"
    path.write_text(text)
    with pytest.raises(ContractError, match=message):
        read_fits(path)
    with pytest.raises(ContractError, match="no such file"):
        read_fits(tmp_path / "missing.json")


def test_typed_coefficients_win_over_the_record():
    law = JointLawFit("ce_avg", 1.0, 2.0, 0.3, 4.0, 0.4, record={"metric": "x", "E": 9.0, "n": 3})
    assert law.as_dict() == {
        "metric": "ce_avg",
        "E": 1.0,
        "n": 3,
        "A": 2.0,
        "alpha": 0.3,
        "B": 4.0,
        "beta": 0.4,
        "D_unit": "training tokens",
    }
    assert FitsFile(joint=(law,)).as_dict()["joint"][0]["E"] == 1.0
