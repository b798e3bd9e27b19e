"""The trainer's hot path: no host reads between log points, labels checked where data enters,
one graph under torch.compile(fullgraph=True), save/stop agreement every k steps, the runtime
policy scoped to the entry point."""

from __future__ import annotations

import contextlib
import dataclasses

import numpy as np
import pytest
import torch

from scaling.core import runtime
from scaling.core.rundir import RunDir
from scaling.data.token_store import TokenStore, TokenStoreError
from scaling.training.distributed import DistInfo
from scaling.training.job import train_run
from scaling.training.trainer import StopRequest, Trainer
from tests.factories import make_token_store, tiny_run_config, write_run

# Every way a tensor's value reaches the host. On CPU `.cpu()` copies nothing, but on a GPU
# each of these waits for the device: none may run inside a training step.
HOST_READS = ("item", "tolist", "cpu", "numpy", "__int__", "__float__", "__bool__", "__index__")


@pytest.fixture(scope="module")
def store(tmp_path_factory, one_thread):
    return make_token_store(tmp_path_factory.mktemp("store") / "tokens")


@contextlib.contextmanager
def recorded_host_reads(where: list[tuple[str, str]], phase: dict):
    """Wrap every HOST_READS method of torch.Tensor; append (method, phase["now"]) per call."""
    saved = {name: getattr(torch.Tensor, name) for name in HOST_READS}

    def wrap(name, fn):
        def wrapper(self, *a, **k):
            where.append((name, phase["now"]))
            return fn(self, *a, **k)

        return wrapper

    for name, fn in saved.items():
        setattr(torch.Tensor, name, wrap(name, fn))
    try:
        yield
    finally:
        for name, fn in saved.items():
            setattr(torch.Tensor, name, fn)


def _phase(method, phase: dict, name: str):
    def wrapped(self, *a, **k):
        before, phase["now"] = phase["now"], name
        try:
            return method(self, *a, **k)
        finally:
            phase["now"] = before

    return wrapped


def test_no_host_reads_between_log_points(store, tmp_path, monkeypatch):
    """30 steps with 2 evaluations, 2 checkpoints and TensorBoard scalars every 10 steps:
    every host read happens inside an evaluation, a checkpoint save, a log line or a
    scalars point; the steps between them read nothing."""
    config = tiny_run_config(
        store,
        steps=30,
        eval_points=2,
        checkpoint_every_steps=15,
        log_every_s=1e9,
        scalars_every_steps=10,
    )
    run_dir = write_run(tmp_path / "run", config)
    calls: list[tuple[str, str]] = []
    phase = {"now": "setup"}  # model construction (init) may read; the loop may not
    for name in ("evaluate", "save_checkpoint", "load_checkpoint", "_log_line", "log_scalars"):
        monkeypatch.setattr(Trainer, name, _phase(getattr(Trainer, name), phase, name))
    steps = {"n": 0}
    real_step = Trainer.train_step

    def counted(self):
        steps["n"] += 1
        phase["now"] = "loop"  # from the first step on, outside log points
        return real_step(self)

    monkeypatch.setattr(Trainer, "train_step", counted)
    torch.set_num_threads(2)
    try:
        with recorded_host_reads(calls, phase):
            train_run(run_dir)  # the config asks for 1 thread ...
        assert torch.get_num_threads() == 2  # ... and the caller's setting is restored after
    finally:
        torch.set_num_threads(1)
    assert steps["n"] == 30
    in_steps = [name for name, where in calls if where == "loop"]
    assert in_steps == [], f"host reads during training steps: {sorted(set(in_steps))}"
    # the recorder works: evaluations and checkpoints do read (the metrics, the loss sum)
    assert any(where == "evaluate" for _, where in calls)
    assert any(where == "save_checkpoint" for _, where in calls)
    assert any(where == "log_scalars" for _, where in calls)


def test_host_read_recorder_catches_a_read_in_the_step(store, tmp_path, monkeypatch):
    """The same recorder sees the per-step `.item()` the trainer used to make."""
    config = tiny_run_config(store, steps=3, eval_points=1)
    trainer = Trainer(
        config, RunDir(write_run(tmp_path / "run", config)), DistInfo(0, 1, 0, torch.device("cpu"))
    )
    calls: list = []
    with recorded_host_reads(calls, {"now": "step"}):
        trainer.train_step()
        assert calls == []
        float(trainer.train_step())  # what `mean_loss = loss_sum.item() / B` amounted to
    assert [name for name, _ in calls] == ["__float__"]


def test_label_out_of_range_is_refused_where_data_enters(tmp_path, one_thread):
    """The token store checks every label when it is opened (before any step); the model's
    forward no longer reads labels back (it checks only their shape and dtype)."""
    path = make_token_store(tmp_path / "tokens", num_classes=4)
    labels = np.load(path / "train" / "labels.npy")
    labels[5] = 4  # num_classes is 4: labels must lie in [0, 4)
    np.save(path / "train" / "labels.npy", labels)
    with pytest.raises(TokenStoreError, match=r"train/labels.npy: labels outside \[0, 4\)"):
        TokenStore(path)
    config = tiny_run_config(path)
    with pytest.raises(TokenStoreError, match="labels outside"):
        Trainer(
            config,
            RunDir(write_run(tmp_path / "run", config)),
            DistInfo(0, 1, 0, torch.device("cpu")),
        )


def _fullgraph(fn, **kw):
    # aot_eager: dynamo's graph capture plus AOTAutograd's joint forward/backward trace,
    # without a C++ compiler (inductor would compile the same graph)
    return torch.compile(fn, fullgraph=True, backend="aot_eager", dynamic=False, **kw)


def _tiny_var(**kw):
    from var_core import VAR

    torch.manual_seed(0)
    return VAR(
        depth=2,
        width=32,
        heads=2,
        num_classes=5,
        vocab_size=40,
        z_channels=8,
        patch_nums=(1, 2, 3),
        **kw,
    )


def test_training_and_evaluation_compile_as_one_graph(one_thread):
    torch._dynamo.reset()
    model = _tiny_var(drop_path=0.1)  # drop path and class dropout on: training as it runs
    labels = torch.tensor([0, 4, 5])  # 5 = the null class
    x_in = torch.randn(3, model.L - 1, 8)
    tokens = torch.randint(0, 40, (3, model.L))
    model.train()
    loss = _fullgraph(model)(labels, x_in, tokens, label_smoothing=0.1)
    loss.backward()
    assert loss.ndim == 0 and torch.isfinite(loss)
    assert all(p.grad is not None for p in model.head.parameters())
    model.eval()
    ce, err = _fullgraph(model)(labels, x_in, tokens, per_token=True)
    ref_ce, ref_err = model.token_losses(labels, x_in, tokens)
    assert torch.allclose(ce, ref_ce, atol=1e-6) and torch.equal(err, ref_err)
    torch._dynamo.reset()


def test_sampler_scale_step_compiles_as_one_graph(one_thread):
    """The KV-cache step (`VAR.run_blocks` with caches) for each scale: one graph per scale
    (the cache grows, so each scale has its own static shapes)."""
    from var_core import KVCache

    torch._dynamo.reset()
    model = _tiny_var().eval()
    cond = model.class_emb(torch.tensor([1, 5]))
    step = _fullgraph(model.run_blocks)
    caches = [KVCache() for _ in model.blocks]
    ref_caches = [KVCache() for _ in model.blocks]
    with torch.no_grad():
        for a, b in model.begin_ends:
            x = torch.randn(2, b - a, model.width)
            got = step(x, cond, caches=caches, masked=False)
            ref = model.run_blocks(x, cond, caches=ref_caches, masked=False)
            assert torch.allclose(got, ref, atol=1e-5)
    assert caches[0].k.shape[2] == model.L
    torch._dynamo.reset()


def test_save_and_stop_agreement_only_every_k_steps_with_several_processes(
    store, tmp_path, monkeypatch
):
    """With world_size > 1 (collectives stubbed), rank 0's decisions are exchanged every
    agree_every_steps steps; a stop request at step 6 is honoured at step 8 (k = 4)."""
    config = tiny_run_config(store, steps=20, eval_points=1, agree_every_steps=4)
    run = RunDir(write_run(tmp_path / "run", config))
    trainer = Trainer(config, run, DistInfo(0, 1, 0, torch.device("cpu")))
    two = DistInfo(0, 2, 0, torch.device("cpu"))
    monkeypatch.setattr(DistInfo, "all_reduce_sum", lambda self, t: None)
    monkeypatch.setattr(DistInfo, "barrier", lambda self: None)
    trainer.dist = dataclasses.replace(two)
    trainer.local_batch = config.optim.batch_size  # this stub "rank" does the whole batch
    agreed_at: list[int] = []
    monkeypatch.setattr(
        Trainer,
        "_agree",
        lambda self, save, signum: (agreed_at.append(self.step), (save, signum))[1],
    )
    stop = StopRequest()
    real_step = Trainer.train_step

    def signal_at_6(self):
        out = real_step(self)
        if self.step == 6:
            stop(15)
        return out

    monkeypatch.setattr(Trainer, "train_step", signal_at_6)
    trainer.run(stop=stop)
    assert agreed_at == [4, 8]
    assert trainer.step == 8
    assert torch.load(run.checkpoint, weights_only=True)["step"] == 8


def test_runtime_policy_is_scoped_and_states_its_choices():
    n = torch.get_num_threads()
    policy = runtime.resolve(None, device="cpu", threads=n + 1)
    assert policy.precision == "fp32" and policy.tf32 is False and policy.compile is False
    with policy.applied():
        assert torch.get_num_threads() == n + 1
    assert torch.get_num_threads() == n  # restored
    assert runtime.resolve(None, device="cpu").threads == runtime.CPU_THREADS_AUTO
    assert (
        "cpu fp32, compile off, threads 3"
        == runtime.resolve(None, device="cpu", threads=3).describe()
    )
    with pytest.raises(ValueError, match="precision must be one of"):
        runtime.resolve(None, device="cpu", precision="fp16")
    with pytest.raises(ValueError, match="device must be auto, cpu or cuda"):
        runtime.resolve(None, device="tpu")


def test_cached_teacher_forcing_input_trains_like_the_computed_one(store, tmp_path):
    """The input cache holds what `teacher_forcing_input` computes for each row: training
    with it and without it (input_cache_mb=0) ends at the same weights (float rounding)."""
    states, initial = [], None
    for name, mb in (("cached", 256.0), ("computed", 0.0)):
        config = tiny_run_config(store, run_id=name, steps=6, eval_points=1, input_cache_mb=mb)
        trainer = Trainer(
            config,
            RunDir(write_run(tmp_path / name, config)),
            DistInfo(0, 1, 0, torch.device("cpu")),
        )
        assert (trainer.inputs.input_cache is not None) == (mb > 0)
        initial = {k: v.clone() for k, v in trainer.model.state_dict().items()}
        for _ in range(6):
            trainer.train_step()
        states.append(trainer.model.state_dict())
    for key, value in states[0].items():
        assert torch.allclose(value, states[1][key], rtol=1e-5, atol=1e-6), key
    assert not torch.allclose(states[0]["head.weight"], initial["head.weight"])  # it trained
