"""The forecast registry (analysis.registry): append-only, scores, located errors."""

from __future__ import annotations

import json

import pytest

from analysis import registry
from contracts import ContractWarning


def one(predicted=2.0, interval=(1.9, 2.1), run="d6") -> registry.ForecastRecord:
    return registry.make_forecast(
        kind="curve",
        target=registry.Target(metric="ce_avg", run=run, step=600),
        predicted=predicted,
        interval=interval,
        level=0.95,
        law="lra",
        settings={"prefix_step": 150},
        E=None,
        input_sha256="abc",
        code="1234567890",
        source="runs/x",
    )


def test_round_trip_and_no_duplicates(tmp_path):
    path = tmp_path / registry.FILE
    f = one()
    assert registry.append(path, [f]) == 1
    assert registry.append(path, [one()]) == 0  # the same forecast from the same data
    assert registry.append(path, [one(predicted=2.05)]) == 1
    back = registry.read(path)
    assert back[0] == f
    assert len(registry.pending(back)) == 2


def test_scoring_by_hand(tmp_path):
    path = tmp_path / registry.FILE
    f = one(predicted=2.0, interval=(1.9, 2.1))
    s = registry.score(f, 2.5)
    assert s.error == pytest.approx(-0.5)
    assert s.rel_error == pytest.approx(2.0 / 2.5 - 1)
    assert s.inside is False
    assert registry.score(f, 2.05).inside is True
    assert registry.score(one(interval=None), 2.05).inside is None
    registry.append(path, [f, s])
    before = path.read_text()
    assert registry.append(path, [registry.score(f, 2.05)]) == 0  # scored once
    assert path.read_text() == before
    [(ff, ss)] = registry.scored(registry.read(path))
    assert ff.id == f.id and ss.observed == 2.5
    assert registry.pending(registry.read(path)) == []


def test_a_torn_last_line_is_ignored_and_a_bad_line_is_located(tmp_path):
    path = tmp_path / registry.FILE
    registry.append(path, [one()])
    with open(path, "a") as fh:
        fh.write('{"record": "forecast", "id": "x"')  # a writer killed mid-line
    assert len(registry.read(path)) == 1
    path.write_text(json.dumps({"record": "score", "forecast": "x"}) + "\n" + path.read_text())
    with pytest.raises(registry.RegistryError, match=r"forecasts.jsonl:1: key 'created_utc'"):
        registry.read(path)
    path.write_text('{"record": "guess"}\n')
    with pytest.raises(registry.RegistryError, match=r":1: 'record' must be"):
        registry.read(path)


def test_an_append_after_a_torn_line_cuts_it_and_the_log_stays_readable(tmp_path):
    """A writer killed mid-line leaves a torn tail; the next append must not glue its line
    onto it (that would make a corrupt middle line and every later read an error)."""
    path = tmp_path / registry.FILE
    f = one()
    registry.append(path, [f])
    with open(path, "a") as fh:
        fh.write('{"record": "forecast", "id": "x"')  # a writer killed mid-line
    with pytest.warns(ContractWarning, match="cut a torn last line"):
        assert registry.append(path, [registry.score(f, 2.05)]) == 1
    back = registry.read(path)
    assert [type(r).__name__ for r in back] == ["ForecastRecord", "ScoreRecord"]
    assert len(path.read_text().splitlines()) == 2
