"""`data.subset` and `data.use_views` as grid axes: run ids, the launch table's data columns,
and a subset larger than the split refused before anything is submitted."""

from __future__ import annotations

import json

import scaling.study.run.launch as launch_mod
from scaling.study.sweep.sweep import load_sweep
from tests.factories import make_token_store, write_sweep


def views_store(path, views: int, n_images: int):
    make_token_store(path, n_train=n_images * views)
    meta = json.loads((path / "meta.json").read_text())
    meta["splits"]["train"].update(images=n_images, views=views, transform="random_crop")
    (path / "meta.json").write_text(json.dumps(meta))
    return path


def test_subset_and_views_are_grid_axes_shown_in_the_launch_table(tmp_path, capsys):
    store = views_store(tmp_path / "store", views=4, n_images=64)
    sweep_file = write_sweep(
        tmp_path / "s.yaml",
        tmp_path / "out",
        store=store,
        depths=[1],
        base={"length": {"images": 128, "steps": None}},
        grid={"depth": [1], "data.subset": [64, 16, 0.5], "data.use_views": [4, 2]},
    )
    sweep = load_sweep(sweep_file)
    ids = [r.run_id for r in sweep.runs]
    assert ids[:3] == ["d1-n64-k4", "d1-n64-k2", "d1-n16-k4"] and "d1-n0.5-k2" in ids
    assert {r.config.data.subset for r in sweep.runs} == {64, 16, 0.5}
    assert launch_mod.main([str(sweep_file), "--dry-run"]) == 0
    out = capsys.readouterr().out
    header = next(line for line in out.splitlines() if line.startswith("run "))
    assert header.split()[:7] == ["run", "depth", "N", "train", "images", "views", "epochs"]
    row = {line.split()[0]: line.split() for line in out.splitlines() if line.startswith("d1-")}
    # 128 images seen: 2 epochs of all 64, 8 of a subset of 16, 4 of half the split (32)
    assert row["d1-n64-k4"][3:6] == ["64", "4", "2"]
    assert row["d1-n16-k2"][3:8] == ["16", "of", "64", "2", "8"]
    assert row["d1-n0.5-k4"][3:8] == ["32", "of", "64", "4", "4"]


def test_a_subset_larger_than_the_split_is_refused_at_launch(tmp_path, capsys):
    store = views_store(tmp_path / "store", views=1, n_images=64)
    sweep_file = write_sweep(
        tmp_path / "s.yaml",
        tmp_path / "out",
        store=store,
        depths=[1],
        grid={"depth": [1], "data.subset": [16, 65]},
    )
    assert launch_mod.main([str(sweep_file), "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert "run d1-n65: data.subset: 65 images asked, but the train split 'train' holds 64" in err
    assert not (tmp_path / "out").exists()
