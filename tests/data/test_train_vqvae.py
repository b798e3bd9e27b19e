"""A short VQVAE training run: reconstruction improves, resume is exact, configs are checked."""

import json

import pytest
import torch

import scaling.data.vqvae_training as tv
from scaling.core.config_io import ConfigError, load_config
from scaling.data.synthetic import generate
from scaling.data.vqvae_config import VQVAETrainConfig
from scaling.data.vqvae_losses import VGG16_CFG, PerceptualLoss
from var_core import load_vqvae

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    return generate(
        tmp_path_factory.mktemp("vq") / "images",
        num_classes=3,
        train_per_class=8,
        val_per_class=4,
        resolution=8,
        seed=1,
    )


def _cfg(images, out, **kw):
    base = dict(
        images=images,
        out=out,
        resolution=8,
        vocab_size=32,
        z_channels=8,
        ch=32,
        ch_mult=(1, 1),
        num_res_blocks=1,
        patch_nums=(1, 2, 4),
        batch_size=8,
        lr=2e-3,
        warmup_steps=5,
        steps=60,
        log_every=10,
        ckpt_every=30,
        eval_images=12,
        restart_every=20,
        device="cpu",
    )
    return VQVAETrainConfig(**{**base, **kw})


def _evals(out):
    lines = [json.loads(ln) for ln in (out / "vqvae_metrics.jsonl").read_text().splitlines()]
    return [r for r in lines if "val_mse" in r]


def test_training_lowers_reconstruction_error(images, tmp_path):
    reports = []
    path = tv.train_vqvae(_cfg(images, tmp_path / "run"), progress=False, report=reports.append)
    evals = _evals(tmp_path / "run")
    assert [r["step"] for r in evals] == [0, 30, 60]
    # progress for the launcher every log_every steps, with the latest validation PSNR
    assert [(r["done"], r["total"], r["unit"]) for r in reports] == [
        (s, 60, "steps") for s in range(10, 61, 10)
    ]
    assert [r["psnr"] for r in reports] == [evals[0]["val_psnr"]] * 3 + [evals[1]["val_psnr"]] * 3
    assert all(r["rate"] > 0 and r["eta_s"] >= 0 for r in reports) and reports[-1]["eta_s"] == 0
    first, last = evals[0], evals[-1]
    assert last["val_mse"] < 0.5 * first["val_mse"]
    assert last["val_psnr"] > first["val_psnr"] + 3
    assert len(last["usage_scale"]) == 3 and last["usage_all"] > 4 / 32
    # the saved file is a VQVAE that reproduces the reported error
    model = load_vqvae(path)
    assert model.config()["patch_nums"] == (1, 2, 4)
    from scaling.data.images import ImageFolder

    val = ImageFolder(images / "val", 8, train=False)
    x = torch.stack([val.load(i) for i in range(12)])
    again = tv.evaluate_vqvae(model, x)
    assert again["val_mse"] == pytest.approx(last["val_mse"], rel=1e-5)
    # TensorBoard: the same evaluations, read back with TensorBoard's reader
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(tmp_path / "run"))
    acc.Reload()
    psnr = {e.step: e.value for e in acc.Scalars("vqvae_val/psnr")}
    assert psnr == {r["step"]: pytest.approx(r["val_psnr"], rel=1e-6) for r in evals}
    for k, pn in enumerate((1, 2, 4)):
        usage = {
            e.step: e.value for e in acc.Scalars(f"vqvae_val/codebook_usage/s{k + 1:02d}_{pn}x{pn}")
        }
        assert usage == {r["step"]: pytest.approx(r["usage_scale"][k], rel=1e-6) for r in evals}
    assert [e.step for e in acc.Scalars("vqvae_train/mse")] == [10, 20, 30, 40, 50, 60]
    assert not (tmp_path / "run" / "by_compute").exists()  # no compute axis for the VQVAE


def test_resume_is_exact(images, tmp_path, monkeypatch):
    real = tv.restart_dead_codes
    calls = {"n": 0}

    def dying(*a, **k):  # the second restart happens at step 40 > checkpoint at 20: die there
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt("simulated kill")
        return real(*a, **k)

    monkeypatch.setattr(tv, "restart_dead_codes", dying)
    out = tmp_path / "int"
    with pytest.raises(KeyboardInterrupt):
        tv.train_vqvae(_cfg(images, out, steps=40, ckpt_every=20, restart_every=15), progress=False)
    monkeypatch.setattr(tv, "restart_dead_codes", real)
    assert torch.load(out / "train_state.pt", weights_only=True)["step"] == 20
    # the launcher takes vqvae.pt as "stage done": a killed run must not leave one behind
    assert not (out / "vqvae.pt").exists()
    with open(out / "vqvae_metrics.jsonl", "a") as f:  # a kill in the middle of an append
        f.write('{"step": 41, "loss": 0.')
    tv.train_vqvae(_cfg(images, out, steps=40, ckpt_every=20, restart_every=15), progress=False)
    # the reference: the same config trained without interruption
    ref2 = tv.train_vqvae(
        _cfg(images, tmp_path / "ref2", steps=40, ckpt_every=20, restart_every=15), progress=False
    )
    a, b = load_vqvae(ref2).state_dict(), load_vqvae(out / "vqvae.pt").state_dict()
    diff = [
        (k, (a[k].float() - b[k].float()).abs().max().item())
        for k in a
        if not torch.equal(a[k], b[k])
    ]
    assert not diff, diff[:5]
    steps = [r["step"] for r in _evals(out)]
    assert steps == [0, 20, 40]  # no duplicated lines after the resume


def test_config_errors_are_located(tmp_path):
    bad = tmp_path / "c.yaml"
    bad.write_text("images: data\nout: o\nresolution: 30\n")
    with pytest.raises(ConfigError, match=r"c.yaml:3: resolution: must be patch_nums\[-1\]"):
        load_config(VQVAETrainConfig, bad)
    bad.write_text("images: data\nout: o\nperceptual_weights: /nope/vgg16.pth\n")
    with pytest.raises(
        ConfigError, match=r"c.yaml:3: perceptual_weights: file /nope/vgg16.pth does not exist"
    ):
        load_config(VQVAETrainConfig, bad)
    bad.write_text("images: data\nout: o\nch: 48\n")
    with pytest.raises(ConfigError, match=r"c.yaml:3: ch: must be a multiple of 32"):
        load_config(VQVAETrainConfig, bad)


def test_perceptual_weights_must_be_vgg16(tmp_path):
    bad = tmp_path / "not_vgg.pth"
    torch.save({"conv.weight": torch.zeros(1)}, bad)
    with pytest.raises(
        ValueError,
        match=r"not_vgg.pth: not a torchvision VGG16 state dict \(missing features.0.bias\)",
    ):
        PerceptualLoss(bad)


def test_discriminator_trains_and_resumes(images, tmp_path):
    cfg = _cfg(
        images,
        tmp_path / "gan",
        steps=12,
        ckpt_every=6,
        disc_weight=0.1,
        disc_start=4,
        restart_every=0,
    )
    tv.train_vqvae(cfg, progress=False)
    st = torch.load(tmp_path / "gan" / "train_state.pt", weights_only=True)
    assert st["step"] == 12 and "disc" in st and "disc_opt" in st
    # the discriminator was updated: its optimizer has steps 4..11 = 8 updates recorded
    assert int(next(iter(st["disc_opt"]["state"].values()))["step"]) == 8


def test_perceptual_loss_on_local_vgg_file(tmp_path):
    # a torchvision-layout VGG16 state dict with random weights (the real file is not here)
    g = torch.Generator().manual_seed(0)
    sd, i, cin = {}, 0, 3
    for v in VGG16_CFG:
        if v == "M":
            i += 1
            continue
        sd[f"features.{i}.weight"] = torch.randn(v, cin, 3, 3, generator=g) * (2 / (9 * cin)) ** 0.5
        sd[f"features.{i}.bias"] = torch.zeros(v)
        i, cin = i + 2, v
    sd["classifier.0.weight"] = torch.zeros(1)  # extra keys are ignored
    vgg = tmp_path / "vgg16.pth"
    torch.save(sd, vgg)
    lp = tmp_path / "lpips.pth"
    torch.save(
        {
            f"lin{k}.model.1.weight": torch.full((1, c, 1, 1), 0.5)
            for k, c in enumerate((64, 128, 256, 512, 512))
        },
        lp,
    )
    x = torch.rand(2, 3, 16, 16, generator=g) * 2 - 1
    y = x.flip(-1)
    plain, lpips = PerceptualLoss(vgg), PerceptualLoss(vgg, lp)
    assert plain(x, x).item() == 0.0 and plain(x, y).item() > 0
    assert not any(p.requires_grad for p in plain.parameters())
    # LPIPS heads of 0.5 per channel vs uniform 1/C: per layer, the distance scales by 0.5 * C
    feats = [(a - b).pow(2).sum(1).mean() for a, b in zip(plain._taps(x), plain._taps(y))]
    expect = sum(0.5 * d for d in feats)
    assert lpips(x, y).item() == pytest.approx(expect.item(), rel=1e-5)
    # gradients reach the reconstruction; tiny images use the taps that still have pixels
    xr = x.clone().requires_grad_(True)
    lpips(xr, y).backward()
    assert xr.grad.abs().sum() > 0
    assert (
        len(plain._taps(x[..., :8, :8])) == 4 and plain(x[..., :8, :8], y[..., :8, :8]).item() > 0
    )
    # and a training run with it: 8 px images, perceptual term on
    images = generate(
        tmp_path / "img", num_classes=2, train_per_class=4, val_per_class=2, resolution=8, seed=0
    )
    cfg = _cfg(
        images, tmp_path / "run", steps=3, ckpt_every=3, perceptual_weights=vgg, lpips_weights=lp
    )
    assert tv.train_vqvae(cfg, progress=False).exists()
