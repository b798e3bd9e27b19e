"""The two atomic writers agree: contracts.atomic.atomic_write (every file the study writes)
and var_core's model writer (var_core.save_model), which var_core keeps because it cannot
import scaling. Round 2 found them drifted (var_core's skipped the folder fsync); these checks
hold both to the same guarantees, observed from outside.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
import torch

from contracts.atomic import atomic_write
from var_core import VQVAE, load_vqvae, save_model
from var_core.checkpoint import _atomic_torch_save

TINY = dict(
    vocab_size=16, z_channels=4, ch=32, ch_mult=(1, 1), num_res_blocks=1, patch_nums=(1, 2, 4)
)


def _scaling_writer(path: Path, payload, fail: bool = False) -> None:
    def write(f):
        torch.save(payload, f)
        if fail:
            raise RuntimeError("killed mid-write")

    atomic_write(path, write)


def _var_core_writer(path: Path, payload, fail: bool = False) -> None:
    if fail:
        payload = {"x": _Unpicklable()}
    _atomic_torch_save(payload, path)


class _Unpicklable:
    def __reduce__(self):
        raise RuntimeError("killed mid-write")


WRITERS = {"contracts.atomic": _scaling_writer, "var_core.checkpoint": _var_core_writer}


@pytest.mark.parametrize("name", WRITERS)
def test_a_failed_write_keeps_the_old_file_and_leaves_no_temp(tmp_path, name):
    path = tmp_path / "model.pt"
    WRITERS[name](path, {"v": torch.arange(3)})
    with pytest.raises(RuntimeError, match="killed mid-write"):
        WRITERS[name](path, {"v": torch.zeros(3)}, fail=True)
    assert torch.equal(torch.load(path)["v"], torch.arange(3))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pt"]


@pytest.mark.parametrize("name", WRITERS)
def test_new_files_get_the_mode_of_a_plain_open(tmp_path, name):
    plain = tmp_path / "plain"
    plain.write_bytes(b"")  # what open() gives under this process's umask
    path = tmp_path / "model.pt"
    WRITERS[name](path, {"v": torch.ones(2)})
    assert stat.S_IMODE(path.stat().st_mode) == stat.S_IMODE(plain.stat().st_mode)


@pytest.mark.parametrize("name", WRITERS)
def test_the_rename_is_made_durable_by_a_folder_fsync(tmp_path, name, monkeypatch):
    synced = []
    real_fsync = os.fsync

    def recording_fsync(fd):
        synced.append(stat.S_ISDIR(os.fstat(fd).st_mode))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    WRITERS[name](tmp_path / "model.pt", {"v": torch.ones(2)})
    assert synced == [False, True]  # the file's data, then the folder holding the new name


def test_save_model_goes_through_the_checked_writer(tmp_path, monkeypatch):
    calls = []
    import var_core.checkpoint as ckpt

    monkeypatch.setattr(ckpt, "_atomic_torch_save", lambda payload, path: calls.append(path))
    save_model(tmp_path / "vq.pt", VQVAE(**TINY))
    assert calls == [tmp_path / "vq.pt"]
    monkeypatch.undo()
    save_model(tmp_path / "vq.pt", VQVAE(**TINY))
    assert load_vqvae(tmp_path / "vq.pt").config()["vocab_size"] == 16
