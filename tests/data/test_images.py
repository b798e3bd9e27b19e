"""Image-folder reading (mixed formats, a corrupt file) and the synthetic generator."""

import hashlib
import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from scaling.data.images import ImageFolder, UnreadableImage, transform
from scaling.data.synthetic import generate


def _write_mixed(root: Path) -> dict[str, np.ndarray]:
    """Class a: RGB JPEG + grayscale PNG; class b: palette GIF, RGBA PNG, a corrupt JPEG."""
    (root / "a").mkdir(parents=True)
    (root / "b").mkdir(parents=True)
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(root / "a" / "x.JPG", quality=95)
    gray = np.tile(np.arange(0, 240, 10, dtype=np.uint8), (20, 1))
    Image.fromarray(gray, "L").save(root / "a" / "y.png")
    pal = Image.fromarray(rgb).convert("P", palette=Image.ADAPTIVE, colors=16)
    pal.save(root / "b" / "p.gif")
    rgba = np.dstack([rgb, np.full((20, 24), 128, np.uint8)])
    Image.fromarray(rgba, "RGBA").save(root / "b" / "q.png")
    good = (root / "a" / "x.JPG").read_bytes()
    (root / "b" / "r.jpg").write_bytes(good[: len(good) // 3])  # truncated
    (root / "b" / "notes.txt").write_text("not an image")
    return {"gray": gray, "rgba": rgba}


def test_mixed_formats_and_corrupt_file(tmp_path):
    arrays = _write_mixed(tmp_path / "train")
    ds = ImageFolder(tmp_path / "train", 16, train=False)
    assert ds.classes == ["a", "b"]
    assert len(ds) == 5  # the .txt file is not listed; the corrupt jpg is (found on reading)
    assert ds.labels.tolist() == [0, 0, 1, 1, 1]
    with pytest.raises(UnreadableImage, match="r.jpg"):
        ds.load(4)
    items = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for i in range(len(ds)):
            items.append(ds[i])
    assert sum("r.jpg" in str(w.message) for w in caught) == 1
    assert len(ds.skipped) == 1 and "1 unreadable skipped" in ds.summary()
    for x, _ in items:
        assert x.shape == (3, 16, 16) and x.dtype == torch.float32
        assert x.min() >= -1 and x.max() <= 1
    # the grayscale image becomes three equal channels
    g = items[1][0]
    assert torch.equal(g[0], g[1]) and torch.equal(g[1], g[2])
    # RGBA: alpha dropped, colour channels kept (compare with a direct RGB conversion)
    direct = transform(Image.fromarray(arrays["rgba"][..., :3]), 16, train=False)
    assert torch.allclose(items[3][0], direct)
    # the corrupt index falls through to the next readable image (wraps to index 0)
    assert torch.equal(items[4][0], items[0][0])


def test_transform_matches_official_geometry():
    # 40x30 image, res 16: shorter side -> 18, longer -> int(18*40/30)=24, centre crop
    img = Image.fromarray(np.random.default_rng(1).integers(0, 256, (30, 40, 3), dtype=np.uint8))
    x = transform(img, 16, train=False)
    ref = img.resize((24, 18), Image.LANCZOS).crop((4, 1, 20, 17))
    expect = torch.from_numpy(np.asarray(ref).astype(np.float32) / 127.5 - 1).permute(2, 0, 1)
    assert torch.allclose(x, expect, atol=1e-6)
    # random crops stay inside and vary with the generator
    g = torch.Generator().manual_seed(0)
    crops = {
        tuple(transform(img, 16, train=True, generator=g)[0, 0, :3].tolist()) for _ in range(20)
    }
    assert len(crops) > 1
    assert torch.equal(transform(img, 16, train=False, flip=True), x.flip(-1))


def test_empty_and_bad_folders(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        ImageFolder(tmp_path / "nope", 16, train=True)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no class folders"):
        ImageFolder(tmp_path / "empty", 16, train=True)
    (tmp_path / "s" / "cat").mkdir(parents=True)
    with pytest.raises(ValueError, match=r"cat has no images"):
        ImageFolder(tmp_path / "s", 16, train=True)
    # a dataset root passed instead of a split is explained
    (tmp_path / "d" / "train" / "cat").mkdir(parents=True)
    with pytest.raises(ValueError, match="dataset root"):
        ImageFolder(tmp_path / "d", 16, train=True)


def test_classes_json_fixes_indices(tmp_path):
    _write_mixed(tmp_path / "train")
    (tmp_path / "classes.json").write_text(json.dumps(["0_first", "a", "b"]))
    with pytest.raises(ValueError, match="0_first"):
        ImageFolder(tmp_path / "train", 16, train=False)  # listed class folder missing
    (tmp_path / "train" / "0_first").mkdir()
    Image.new("RGB", (20, 20)).save(tmp_path / "train" / "0_first" / "z.bmp")
    ds = ImageFolder(tmp_path / "train", 16, train=False)
    assert ds.classes == ["0_first", "a", "b"] and ds.labels.tolist()[:3] == [0, 1, 1]


def _digest(root: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(root.rglob("*.png")):
        h.update(str(p.relative_to(root)).encode())
        h.update(p.read_bytes())
    return h.hexdigest()


def test_synthetic_deterministic_and_class_dependent(tmp_path):
    kw = dict(num_classes=4, train_per_class=6, val_per_class=2, resolution=16, seed=3)
    a, b = generate(tmp_path / "a", **kw), generate(tmp_path / "b", **kw)
    assert _digest(a) == _digest(b)
    assert (
        len(list((a / "train").rglob("*.png"))) == 24 and len(list((a / "val").rglob("*.png"))) == 8
    )
    assert json.loads((a / "classes.json").read_text()) == [
        "class_000",
        "class_001",
        "class_002",
        "class_003",
    ]
    # another seed gives other bytes; re-running is a no-op; other params are refused
    assert _digest(generate(tmp_path / "c", **{**kw, "seed": 4})) != _digest(a)
    mtime = (a / "train" / "class_000" / "000000.png").stat().st_mtime_ns
    generate(a, **kw)
    assert (a / "train" / "class_000" / "000000.png").stat().st_mtime_ns == mtime
    with pytest.raises(ValueError, match="other parameters"):
        generate(a, **{**kw, "train_per_class": 7})
    # class-dependent: a nearest-class-mean classifier on raw pixels beats chance on val
    ds_tr = ImageFolder(a / "train", 16, train=False)
    ds_va = ImageFolder(a / "val", 16, train=False)
    xtr = torch.stack([ds_tr[i][0] for i in range(len(ds_tr))]).flatten(1)
    xva = torch.stack([ds_va[i][0] for i in range(len(ds_va))]).flatten(1)
    means = torch.stack([xtr[torch.from_numpy(ds_tr.labels == c)].mean(0) for c in range(4)])
    pred = torch.cdist(xva, means).argmin(1).numpy()
    assert (pred == ds_va.labels).mean() >= 0.75
    # and images within a class differ (real within-class entropy)
    assert (xtr[0] - xtr[1]).abs().mean() > 0.05


def _synthetic_with_one_truncated(root: Path, split: str = "train") -> Path:
    """A small synthetic set with one file of `split` cut to a third (a truncated copy)."""
    generate(root, num_classes=2, train_per_class=4, val_per_class=3, resolution=16)
    victim = sorted((root / split).rglob("*.png"))[1]
    data = victim.read_bytes()
    victim.write_bytes(data[: len(data) // 3])
    return victim


def test_one_skip_policy_for_every_stage_that_reads_images(tmp_path):
    """The classifier, sample reference sets and online views skip a truncated file as the
    tokenizer and the VQVAE do (counted, never an error), and the process-wide record that
    a stage's job reports (status.json `skipped_images`) names it once."""
    from scaling.data import images
    from scaling.data.classifier import load_split, train_classifier
    from scaling.data.online_views import OnlineViews
    from scaling.training.sample_eval import _image_folder_uint8
    from var_core import VQVAE

    root = tmp_path / "set"
    victim = _synthetic_with_one_truncated(root)
    images.reset_skipped()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        x, y, classes, res, skipped = load_split(root, "train")
        assert x.shape == (7, 3, 16, 16) and len(y) == 7 and skipped == [str(victim)]
        # labels stay with their images: the skipped file's label is the one missing
        full = ImageFolder(root / "train", 16, train=False)
        kept = [lab for (p, lab) in full.samples if p != victim]
        assert y.tolist() == kept
        out = train_classifier(root, tmp_path / "clf.pt", epochs=1, batch_size=4)
        meta = torch.load(out, weights_only=True)
        assert meta["skipped_images"] == [str(victim)] and meta["train_images"] == 7
        ref, n_skipped = _image_folder_uint8(root / "train", 16, None)
        assert ref.shape == (7, 16, 16, 3) and ref.dtype == np.uint8 and n_skipped == 1
        vq = VQVAE(
            vocab_size=16,
            z_channels=4,
            ch=32,
            ch_mult=(1, 2),
            num_res_blocks=1,
            patch_nums=(1, 2, 4),
        )
        views = OnlineViews(root / "train", vq, classes, seed=0, device=torch.device("cpu"))
        bad = next(i for i, (p, _) in enumerate(views.ds.samples) if p == victim)
        used, crop = views.view(bad, epoch=0)
        assert used == bad + 1 and crop.shape == (3, vq.image_size, vq.image_size)
        tokens, labels = views.batch(np.array([bad, 0]), epoch=0)
        assert labels.tolist() == [views.ds.samples[bad + 1][1], views.ds.samples[0][1]]
    assert images.skipped_files() == [str(victim)]
