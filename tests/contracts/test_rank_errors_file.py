"""rank_errors/rank<k>.json: the reader and writer against records written out by hand here,
and which error the status reports first (the latest attempt's earliest)."""

from __future__ import annotations

import json

import pytest

from contracts import ContractError
from contracts.rank_errors import (
    RankError,
    first_rank_error,
    read_rank_error,
    read_rank_errors,
    write_rank_error,
)


def record(rank: int, time: float, attempt: str, error: str = "RuntimeError: x") -> str:
    """A record as an older job wrote it: no schema_version."""
    return json.dumps(
        {"rank": rank, "host": f"node{rank // 2}", "time": time, "attempt": attempt, "error": error}
    )


def test_the_first_error_is_the_earliest_of_the_latest_attempt(tmp_path):
    folder = tmp_path / "rank_errors"
    folder.mkdir()
    # attempt 7.0 failed first on rank 1; the requeued attempt 7.1 failed on rank 3, then
    # ranks 0 and 2 timed out waiting for it
    (folder / "rank1.json").write_text(record(1, 100.0, "7.0"))
    (folder / "rank3.json").write_text(record(3, 200.0, "7.1", "ValueError: injected"))
    (folder / "rank0.json").write_text(record(0, 230.5, "7.1", "DistBackendError: timeout"))
    (folder / "rank2.json").write_text(record(2, 230.0, "7.1", "DistBackendError: timeout"))
    first = first_rank_error(folder)
    assert first == RankError(3, "node1", 200.0, "7.1", "ValueError: injected", schema_version=0)
    assert [r.rank for r in read_rank_errors(folder)] == [0, 1, 2, 3]
    assert first_rank_error(tmp_path / "none") is None  # no folder: no error


def test_written_records_carry_the_version_and_read_back(tmp_path):
    path = write_rank_error(tmp_path / "rank_errors", RankError(5, "gpu7", 12.5, "9.0", "E"))
    assert path.name == "rank5.json"
    doc = json.loads(path.read_text())
    assert doc == {
        "schema_version": 1,
        "rank": 5,
        "host": "gpu7",
        "time": 12.5,
        "attempt": "9.0",
        "error": "E",
    }
    assert read_rank_error(path) == RankError(5, "gpu7", 12.5, "9.0", "E")


@pytest.mark.parametrize(
    "text, message",
    [
        ('{"rank": 1, "host": "n", "attempt": "1.0", "error": "E"}', "rank1.json: time: missing"),
        (record(1, 1.0, "1.0").replace('"time": 1.0', '"time": "late"'), "time: expected a number"),
        (record(1, 1.0, "1.0").replace('"rank": 1', '"rank": -1'), "rank: expected a whole"),
        ('{"rank": 1,\n "host": "n"\n "time": 1}', "rank1.json:3: not JSON"),
        ("[]", "expected a JSON object"),
    ],
)
def test_a_bad_record_names_the_file_and_the_field(tmp_path, text, message):
    folder = tmp_path / "rank_errors"
    folder.mkdir()
    (folder / "rank1.json").write_text(text)
    with pytest.raises(ContractError, match=message):
        first_rank_error(folder)
