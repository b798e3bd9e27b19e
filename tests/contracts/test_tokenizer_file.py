"""tokenizer_quality.json: its reader and writer against a file written out by hand here, and
every reader error naming the file and the key."""

from __future__ import annotations

import json

import pytest

from contracts import ContractError
from contracts.tokenizer import read_quality, write_quality

DOC = {
    "schema_version": 1,
    "vqvae_sha256": "ab12",
    "vqvae_path": "data/vqvae/vqvae.pt",
    "vocab_size": 4,
    "patch_nums": [1, 2],
    "split": "val",
    "images": 2,
    "psnr": 20.5,
    "psnr_mean_colour": 12.0,
    "scales": [
        {
            "pn": 1,
            "count": 2,
            "used": 1,
            "usage": 0.25,
            "entropy_nats": 0.0,
            "entropy_bits": 0.0,
            "bias_nats": 0.0,
        },
        {
            "pn": 2,
            "count": 8,
            "used": 4,
            "usage": 1.0,
            "entropy_nats": 1.3,
            "entropy_bits": 1.9,
            "bias_nats": 0.1875,
        },
    ],
    "features": "classifier:classifier.pt",
    "recon_fd": 1.5,
    "recon_acc": 0.9,
    "recon_fid": None,
}


def test_round_trip_and_table_columns(tmp_path):
    path = tmp_path / "tokenizer_quality.json"
    path.write_text(json.dumps(DOC))
    q = read_quality(path)
    assert q is not None and q.patch_nums == (1, 2) and q.tokens_per_image == 5
    assert q.scales[1].usage == 1.0 and q.recon_fid is None
    cols = q.columns()
    assert cols["tok_usage_s0"] == 0.25 and cols["tok_entropy_bits_s1"] == 1.9
    assert cols["tok_entropy_bits_image"] == pytest.approx(0.0 * 1 + 1.9 * 4)
    assert cols["tok_L"] == 5 and cols["tok_vocab"] == 4 and cols["tok_psnr"] == 20.5
    copy = tmp_path / "copy.json"
    write_quality(copy, q)
    assert json.loads(copy.read_text()) == DOC
    assert read_quality(tmp_path / "none.json") is None


def _broken(change):
    doc = json.loads(json.dumps(DOC))
    change(doc)
    return doc


@pytest.mark.parametrize(
    "doc, where",
    [
        (_broken(lambda d: d.pop("psnr")), "psnr: missing"),
        (_broken(lambda d: d.update(psnr="high")), "psnr: expected a finite number"),
        (_broken(lambda d: d.update(vocab_size=-1)), "vocab_size: expected a count"),
        (_broken(lambda d: d["scales"][1].pop("usage")), r"scales\[1\]\.usage: missing"),
        (_broken(lambda d: d["scales"][0].update(pn=3)), r"scales\[0\]\.pn: 3, patch_nums"),
        (_broken(lambda d: d["scales"].pop()), "scales: 1 entries for 2 patch_nums"),
        (_broken(lambda d: d.update(patch_nums=[0, 2])), "patch_nums: expected positive"),
        (_broken(lambda d: d.update(recon_fd="x")), "recon_fd: expected a finite number"),
        (_broken(lambda d: d.update(schema_version=9)), "schema_version 9 is newer"),
        ([1, 2], "expected a JSON object"),
    ],
)
def test_reader_errors_name_file_and_key(tmp_path, doc, where):
    path = tmp_path / "tokenizer_quality.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(ContractError, match=where) as e:
        read_quality(path)
    assert str(e.value).startswith(str(path))


def test_a_torn_file_names_its_line(tmp_path):
    path = tmp_path / "tokenizer_quality.json"
    path.write_text(json.dumps(DOC, indent=1)[:80])
    with pytest.raises(ContractError, match=r"tokenizer_quality.json:\d+: not JSON"):
        read_quality(path)
