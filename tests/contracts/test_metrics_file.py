"""metrics.jsonl: its reader and writer against files written out by hand here."""

from __future__ import annotations

import math
import pickle

import pytest

from contracts import ContractError, ContractWarning
from contracts.metrics import MetricsRecord, append_metrics, read_metrics

# two lines as the trainer and the sample stage write them (schema 1), typed out by hand
LINE_EVAL = (
    '{"schema_version":1,"run":"d2","depth":2,"params":1000,"width":128,"batch":8,'
    '"peak_lr":0.001,"epochs":0.5,"seed":3,"step":10,"images":80,"tokens":2720,'
    '"flops":1200000,"flops_6nd":16320000,"wall_s":1.5,"train_loss":7.25,"lr":0.0005,'
    '"ce_avg":7.0,"ce_last":6.5,"err_avg":0.9,"err_last":0.95,"ce_by_scale":[6.0,8.0],'
    '"err_by_scale":[0.8,1.0],"eval":"full","eval_images":16,"eval_flops":4000,"eval_s":0.25}\n'
)
LINE_SAMPLES = (
    '{"schema_version":1,"run":"d2","step":10,"eval":"samples","sample_acc":0.75,'
    '"sample_err":0.25,"sample_fd":3.5,"sample_count":12,"sample_folder":"/x/samples/step10"}\n'
)


def test_round_trip_of_a_hand_written_file(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text(LINE_EVAL + LINE_SAMPLES)
    first, second = read_metrics(path)
    assert (first.run, first.step, first.params, first.width) == ("d2", 10, 1000, 128)
    assert (first.ce_avg, first.err_last, first.kind) == (7.0, 0.95, "full")
    assert first.ce_by_scale == (6.0, 8.0) and first.eval_s == 0.25 and first.line == 1
    assert second.kind == "samples" and second.samples["sample_fd"] == 3.5 and second.line == 2
    assert second.ce_avg is None and not second.extra
    # written back through the writer: the same bytes
    copy = tmp_path / "copy.jsonl"
    for record in (first, second):
        append_metrics(copy, record)
    assert copy.read_text() == path.read_text()


def test_an_old_unversioned_file_reads_as_version_0(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"run": "d1", "step": 5, "ce_avg": 8.5, "note": "hand-made"}\n')
    (record,) = read_metrics(path)
    assert record.schema_version == 0 and record.kind == "full"
    assert (record.step, record.ce_avg, dict(record.extra)) == (5, 8.5, {"note": "hand-made"})
    assert record.columns() == {"run": "d1", "step": 5, "ce_avg": 8.5, "note": "hand-made"}


def test_torn_last_line_is_skipped_with_a_located_warning(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text(LINE_EVAL + '{"schema_version":1,"run":"d2","step":20,"ce_a')
    with pytest.warns(ContractWarning, match=r"metrics\.jsonl:2: skipped a torn last line"):
        records = read_metrics(path)
    assert [r.step for r in records] == [10]


def test_corrupt_middle_line_is_an_error_naming_file_and_line(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text(LINE_EVAL + '{"step": 20, "ce_a\n' + LINE_SAMPLES)
    with pytest.raises(ContractError, match=r"metrics\.jsonl:2: unreadable line") as e:
        read_metrics(path)
    assert e.value.line == 2 and e.value.path == path


@pytest.mark.parametrize(
    "line, message",
    [
        ('["not", "an", "object"]', r":2: not a JSON object but list"),
        ('{"step": "ten"}', r":2: step: expected a number, got 'ten'"),
        ('{"step": 1, "ce_by_scale": 7}', r":2: ce_by_scale: expected a list of numbers"),
        ('{"step": 1, "eval": "other"}', r":2: eval: expected one of full, subset, samples"),
        ('{"schema_version": 99, "step": 1}', r":2: schema_version 99 is newer"),
    ],
)
def test_a_wrong_line_is_an_error_naming_file_line_and_column(tmp_path, line, message):
    path = tmp_path / "metrics.jsonl"
    path.write_text(LINE_EVAL + line + "\n")
    with pytest.raises(ContractError, match=message):
        read_metrics(path)


def test_the_writer_cuts_a_torn_tail_and_completes_a_whole_line(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text(LINE_EVAL + '{"step": 20, "ce_')  # a crash mid-append
    with pytest.warns(ContractWarning, match="cut a torn last line"):
        append_metrics(path, MetricsRecord(run="d2", step=30, ce_avg=6.0))
    assert (
        path.read_text() == LINE_EVAL + '{"schema_version":1,"run":"d2","step":30,"ce_avg":6.0}\n'
    )
    path.write_text('{"step": 1}')  # complete, only its newline missing: kept
    append_metrics(path, MetricsRecord(step=2))
    assert path.read_text() == '{"step": 1}\n{"schema_version":1,"step":2}\n'


def test_missing_file_has_no_records_and_records_pickle(tmp_path):
    assert read_metrics(tmp_path / "none.jsonl") == []
    record = MetricsRecord(step=1, ce_by_scale=(1.0, math.inf), samples={"fid": 2.0})
    assert pickle.loads(pickle.dumps(record)) == record
    with pytest.raises(ValueError, match="not in SAMPLE_FIELDS: fidd"):
        MetricsRecord(step=1, samples={"fidd": 2.0})
