"""scaling.sample_eval on a tiny trained run, with small feature networks (the Inception
weights cannot be had on these machines: the Inception path is tested up to its weights check)."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
from PIL import Image

from analysis.results import read_runs
from scaling.core.provenance import sha256_file
from scaling.data.classifier import SmallClassifier
from scaling.training.config import SamplesConfig, load_run_config
from scaling.training.job import samples_after_training, train_run
from scaling.training.sample_eval import (
    SampleEvalError,
    evaluate_run,
    load_reference,
    main,
    read_samples,
    sample_folder,
)
from scaling.training.sample_features import FeatureError, check_inception_weights
from tests.factories import make_token_store, tiny_run_config, write_run
from tests.paths import ROOT

PN = (1, 2, 4)  # VQVAE x2 down: 8 px images
C = 4


class ConstantNet:
    """Features = the mean colour per channel and a fixed projection; logits always class 0."""

    name, dim, image_size, kind = "test-net", 6, None, "inception"

    def __call__(self, images):
        x = images.astype(np.float64) / 255
        f = np.concatenate([x.mean(axis=(1, 2)), x.std(axis=(1, 2))], axis=1)
        logits = np.zeros((len(images), C))
        logits[:, 0] = 1.0
        return f, logits


@pytest.fixture(scope="module")
def trained(tmp_path_factory, one_thread):
    from var_core import VQVAE, save_model

    root = tmp_path_factory.mktemp("samples")
    store = make_token_store(root / "store", patch_nums=PN, num_classes=C, n_train=64, n_val=32)
    torch.manual_seed(0)
    vq = VQVAE(vocab_size=32, z_channels=8, ch=32, ch_mult=(1, 2), num_res_blocks=1, patch_nums=PN)
    save_model(root / "vqvae.pt", vq)
    meta = json.loads((store / "meta.json").read_text())
    meta.update(vqvae_path=str(root / "vqvae.pt"), vqvae_sha256=sha256_file(root / "vqvae.pt"))
    (store / "meta.json").write_text(json.dumps(meta))
    # a reference image folder: 4 classes x 6 images of 8 px
    rng = np.random.default_rng(0)
    for c in range(C):
        (root / "ref" / f"class{c}").mkdir(parents=True)
        for i in range(6):
            Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(
                root / "ref" / f"class{c}" / f"{i}.png"
            )
    torch.manual_seed(1)
    clf = SmallClassifier(C, 8, width=8, feature_dim=5)
    torch.save(
        {
            "format": "var-scaling-classifier-1",
            "config": clf.config,
            "classes": [],
            "model": clf.state_dict(),
            "val_accuracy": 0.0,
        },
        root / "clf.pt",
    )
    samples = SamplesConfig(
        per_class=3,
        shard_size=5,
        batch_size=4,
        top_k=0,
        top_p=0.0,
        features="classifier",
        classifier=str(root / "clf.pt"),
        reference=str(root / "ref"),
        after_training=True,
    )
    cfg = dataclasses.replace(tiny_run_config(store, steps=6, eval_points=1), samples=samples)
    run_dir = write_run(root / "runs" / "tiny", cfg)
    train_run(run_dir)
    return root, run_dir


def test_balanced_resumable_sample_folder_and_classifier_metrics(trained):
    root, run_dir = trained
    samples_after_training(run_dir)  # the launcher's stage after training
    status = json.loads((run_dir / "status.json").read_text())
    assert status["samples"] == "done", status.get("samples_error")
    rec = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()][-1]
    assert rec["eval"] == "samples" and rec["sample_count"] == 12 and rec["sample_per_class"] == 3
    assert 0 <= rec["sample_acc"] <= 1 and rec["sample_err"] == pytest.approx(1 - rec["sample_acc"])
    assert rec["sample_fd"] > 0 and rec["sample_reference_images"] == 24
    folder = sample_folder(run_dir, load_run_config(run_dir / "config.yaml").samples, rec["step"])
    shards = sorted(folder.glob("shard_*.npz"))
    assert [np.load(s)["labels"].tolist() for s in shards] == [
        [0, 1, 2, 3, 0],
        [1, 2, 3, 0, 1],
        [2, 3],
    ]
    images, labels = read_samples(folder, 8)
    assert images.shape == (12, 8, 8, 3) and np.bincount(labels).tolist() == [3] * C
    # resume: a lost shard is redrawn identically, the others are not touched
    kept = shards[0].stat().st_mtime_ns
    lost = np.load(shards[1])["images"]
    shards[1].unlink()
    samples_after_training(run_dir)  # its line is in metrics.jsonl: nothing happens
    assert not shards[1].exists()
    # resuming the finished run truncates metrics.jsonl to its checkpoint: the stage redoes the line
    train_run(run_dir)
    assert '"samples"' not in (run_dir / "metrics.jsonl").read_text()
    samples_after_training(run_dir)
    rec2 = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()][-1]
    assert (
        np.array_equal(np.load(shards[1])["images"], lost) and shards[0].stat().st_mtime_ns == kept
    )
    assert rec2["sample_fd"] == pytest.approx(rec["sample_fd"])
    # the tidy table joins the sample line to the final evaluation row
    table = read_runs(run_dir.parent)
    assert len(table) == 1 and table["sample_fd"].iloc[0] == pytest.approx(rec2["sample_fd"])
    assert table["ce_avg"].notna().all()


def test_inception_kind_metrics_against_hand_values(trained):
    """Reference = the samples themselves: FID 0, precision = recall = 1; a network that always
    answers class 0 has IS 1; all this through the same code path as the Inception features."""
    root, run_dir = trained
    cfg = dataclasses.replace(
        load_run_config(run_dir / "config.yaml").samples, features="inception"
    )
    folder = sample_folder(run_dir, cfg, 6)
    evaluate_run(
        run_dir, dataclasses.replace(cfg, reference=str(root / "ref")), features=ConstantNet()
    )
    images, _ = read_samples(folder, 8)
    np.savez(root / "self.npz", arr_0=images)
    rec = evaluate_run(
        run_dir, dataclasses.replace(cfg, reference=str(root / "self.npz")), features=ConstantNet()
    )
    assert rec["fid"] == pytest.approx(0, abs=1e-6)
    assert rec["precision"] == 1.0 and rec["recall"] == 1.0
    assert rec["is"] == pytest.approx(1.0)
    assert rec["sample_features"] == "test-net" and rec["sample_cfg"] == 1.5


def test_bad_inputs(trained, tmp_path):
    root, run_dir = trained
    net = ConstantNet()
    # reference statistics of another feature size
    np.savez(tmp_path / "stats.npz", mu=np.zeros(2048), sigma=np.eye(2048))
    with pytest.raises(SampleEvalError, match=r"have 2048 features .* gives 6"):
        load_reference(str(tmp_path / "stats.npz"), net, 8, None)
    with pytest.raises(SampleEvalError, match="needs `mu` and `sigma`"):
        np.savez(tmp_path / "other.npz", x=np.zeros(3))
        load_reference(str(tmp_path / "other.npz"), net, 8, None)
    with pytest.raises(SampleEvalError, match="VIRTUAL_imagenet256_labeled.npz"):
        load_reference(str(tmp_path / "missing.npz"), net, 8, None)
    # Inception weights: missing, not a torch file, a torch file of something else
    with pytest.raises(FeatureError, match="weights-inception-2015-12-05"):
        check_inception_weights(tmp_path / "nothing.pth")
    (tmp_path / "junk.pth").write_bytes(b"this is not a weights file")
    with pytest.raises(FeatureError, match="not an Inception weights file"):
        check_inception_weights(tmp_path / "junk.pth")
    torch.save({"fc.weight": torch.zeros(10, 64)}, tmp_path / "small.pth")
    with pytest.raises(
        FeatureError,
        match=r"not the TF-FID Inception weights .*Conv2d_1a_3x3.conv.weight, fc.weight",
    ):
        check_inception_weights(tmp_path / "small.pth")
    # a sample folder with images of the wrong size
    (tmp_path / "s").mkdir()
    np.savez(
        tmp_path / "s" / "shard_00000.npz",
        images=np.zeros((2, 16, 16, 3), np.uint8),
        labels=np.zeros(2),
    )
    with pytest.raises(SampleEvalError, match=r"shard_00000.npz: images are 16x16 px but 8x8"):
        read_samples(tmp_path / "s", 8)
    np.savez(
        tmp_path / "s" / "shard_00000.npz",
        images=np.zeros((2, 8, 8, 3), np.float32),
        labels=np.zeros(2),
    )
    with pytest.raises(SampleEvalError, match="must be uint8"):
        read_samples(tmp_path / "s", 8)


def test_cli_errors_exit_2(trained, tmp_path, capsys):
    root, run_dir = trained
    assert main([str(run_dir), "--features", "inception"]) == 2
    assert "samples.inception_weights is not set" in capsys.readouterr().err
    assert main([str(run_dir), "--per-class", "0"]) == 2
    assert "per_class" in capsys.readouterr().err
    unfinished = write_run(tmp_path / "unfinished", load_run_config(run_dir / "config.yaml"))
    assert main([str(unfinished)]) == 2
    assert "not done" in capsys.readouterr().err


def test_sample_lines_join_the_tidy_table(tmp_path):
    """Hand-written metrics lines: the samples line lands on the evaluation row of its step."""
    run = tmp_path / "r1"
    run.mkdir()
    lines = [
        dict(
            run="r1",
            params=10,
            step=5,
            flops=1e9,
            ce_avg=3.0,
            ce_last=3.0,
            err_avg=0.5,
            err_last=0.5,
        ),
        dict(
            run="r1",
            params=10,
            step=10,
            flops=2e9,
            ce_avg=2.5,
            ce_last=2.4,
            err_avg=0.4,
            err_last=0.4,
        ),
        dict(
            run="r1", params=10, step=10, flops=2e9, eval="samples", sample_fd=7.0, sample_acc=0.1
        ),
        dict(
            run="r1", params=10, step=10, flops=2e9, eval="samples", sample_fd=4.0, sample_acc=0.3
        ),
        dict(run="r1", params=10, step=99, eval="samples", sample_fd=1.0),
    ]
    (run / "metrics.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    with pytest.warns(UserWarning, match="r1 step 99"):
        table = read_runs(tmp_path)
    assert table["step"].tolist() == [5, 10]
    assert np.isnan(table["sample_fd"].iloc[0]) and table["sample_fd"].iloc[1] == 4.0
    assert table["sample_acc"].iloc[1] == 0.3 and table["ce_avg"].tolist() == [3.0, 2.5]


def test_demo_sweep_prepares_the_classifier_and_scores_samples(tmp_path):

    import yaml

    from scaling.core.config_io import ConfigError
    from scaling.study.sweep.sweep import load_sweep

    demo = ROOT / "sweeps" / "demo.yaml"
    data = yaml.safe_load(demo.read_text())
    data["output"] = str(tmp_path / "out")
    (tmp_path / "demo.yaml").write_text(yaml.safe_dump(data))
    sweep = load_sweep(tmp_path / "demo.yaml")
    assert sweep.stages() == ["synthetic", "vqvae", "tokenize", "classifier", "quality"]
    s = sweep.runs[0].config.samples
    assert (
        s.after_training
        and s.features == "classifier"
        and (s.per_class, s.cfg, s.top_k, s.top_p) == (50, 1.5, 900, 0.96)
    )
    assert s.classifier == str(
        (tmp_path / "out" / "_data" / "classifier" / "classifier.pt").absolute()
    )
    assert s.reference == str((tmp_path / "out" / "_data" / "images" / "val").absolute())
    bad = dict(data, prepare=dict(data["prepare"], classifier={"epochs": 0}))
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(bad))
    with pytest.raises(ConfigError, match=r"prepare.classifier.epochs"):
        load_sweep(tmp_path / "bad.yaml")
    no_images = dict(data, data={"tokens": str(tmp_path)}, prepare={"classifier": {}})
    (tmp_path / "noimg.yaml").write_text(yaml.safe_dump(no_images))
    with pytest.raises(ConfigError, match=r"prepare.classifier: needs images"):
        load_sweep(tmp_path / "noimg.yaml")


def test_fit_recovers_a_sample_metric_law(tmp_path):
    """sample_fd = (beta N)^alpha drawn with 2% noise at the final step of 5 runs: scaling.fit
    recovers alpha against N (the lines are joined onto the final evaluations)."""
    from scaling.study.laws.fit import run as fit_run

    rng = np.random.default_rng(0)
    alpha, beta = -0.3, 2e3
    for i, n in enumerate([1e4, 3e4, 1e5, 3e5, 1e6]):
        fd = (beta * n / 1e9) ** alpha * np.exp(rng.normal(0, 0.02))
        lines = [
            dict(
                run=f"r{i}",
                params=n,
                step=s,
                flops=6 * n * s * 1e3,
                ce_avg=3.0,
                ce_last=3.0,
                err_avg=0.5,
                err_last=0.5,
            )
            for s in (10, 100)
        ]
        lines.append(dict(run=f"r{i}", params=n, step=100, eval="samples", sample_fd=fd))
        (tmp_path / f"r{i}").mkdir()
        (tmp_path / f"r{i}" / "metrics.jsonl").write_text(
            "".join(json.dumps(x) + "\n" for x in lines)
        )
    doc = fit_run(
        [
            str(tmp_path),
            "--set",
            "metrics=[sample_fd]",
            "--set",
            "against=[N]",
            "--set",
            "bootstrap=0",
            "--no-plots",
        ]
    )
    (law,) = doc["fits"]
    assert law["alpha"] == pytest.approx(alpha, abs=0.03) and law["E"] == 0 and law["paper"] is None
