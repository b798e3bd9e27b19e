"""status.json: its reader and writer against files written out by hand here."""

from __future__ import annotations

import json
import pickle

import pytest

from contracts import ContractError
from contracts.status import RunStatus, RunSummary, read_status, write_status

STATUS = """{
  "schema_version": 1,
  "state": "done",
  "step": 40,
  "final": {
    "step": 40,
    "ce_avg": 6.5
  },
  "job_ids": [
    "123"
  ],
  "log": "/out/_submitit/123/123_0_log.out",
  "updated_at": 1700000000.5
}
"""


def test_round_trip_of_a_hand_written_file(tmp_path):
    path = tmp_path / "status.json"
    path.write_text(STATUS)
    status = read_status(path)
    assert (status.state, status.step, status.finished) == ("done", 40, True)
    assert status.final == RunSummary(step=40, metrics={"ce_avg": 6.5})
    assert status.job_ids == ("123",) and status.error is None and status.total_steps is None
    assert status.log == "/out/_submitit/123/123_0_log.out"
    assert pickle.loads(pickle.dumps(status)) == status
    copy = tmp_path / "copy.json"
    write_status(copy, status)
    assert copy.read_text() == STATUS


def test_an_old_unversioned_file_reads_as_version_0_and_a_missing_one_is_pending(tmp_path):
    path = tmp_path / "status.json"
    path.write_text('{"state": "failed", "error": "RuntimeError: boom", "attempts": 2}')
    status = read_status(path)
    assert (status.schema_version, status.state, status.error) == (
        0,
        "failed",
        "RuntimeError: boom",
    )
    assert status.as_dict() == {"state": "failed", "error": "RuntimeError: boom", "attempts": 2}
    assert read_status(tmp_path / "none.json") == RunStatus(state="pending")
    # a key written as null stays in the record (a cleared error is still a field)
    path.write_text('{"state": "queued", "error": null}')
    assert read_status(path).as_dict() == {"state": "queued", "error": None}


@pytest.mark.parametrize(
    "text, message",
    [
        ('{"state": "done", ', r"status\.json: corrupt status file \(.*line 1 column"),
        ("[1, 2]", r"status\.json: not a status record"),
        ('{"state": "finished"}', r"status\.json: not a status record .*got 'finished'"),
        ('{"state": "done", "step": "40"}', r"status\.json: step: expected a count"),
        (
            '{"state": "running", "total_steps": 1.5}',
            r"status\.json: total_steps: expected a count",
        ),
        ('{"state": "queued", "job_ids": [123]}', r"status\.json: job_ids: expected a list of str"),
        (
            '{"state": "done", "final": {"ce_avg": "low"}}',
            r"status\.json: final\.ce_avg: expected a number",
        ),
        (
            '{"state": "done", "final": {"tokens": 2.5}}',
            r"status\.json: final\.tokens: expected a count",
        ),
        ('{"state": "failed", "log": 7}', r"status\.json: log: expected a string"),
    ],
)
def test_an_unreadable_status_is_an_error_naming_the_file(tmp_path, text, message):
    path = tmp_path / "status.json"
    path.write_text(text)
    with pytest.raises(ContractError, match=message):
        read_status(path)


def test_writer_writes_the_schema_version_and_checks_the_state(tmp_path):
    path = tmp_path / "status.json"
    write_status(path, RunStatus(state="queued", fields={"job_ids": ["7"]}))
    assert json.loads(path.read_text()) == {
        "schema_version": 1,
        "state": "queued",
        "job_ids": ["7"],
    }
    with pytest.raises(ValueError, match="unknown run state 'later'"):
        RunStatus(state="later")
