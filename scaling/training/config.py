"""The configuration of one training run (one grid point), as typed frozen dataclasses.

A run's `config.yaml` is exactly `dump_yaml(RunConfig)`; `load_run_config(path)` reads it back
with located errors (file:line: key.path: message). Defaults are the official VAR recipe
(docs/specification.md, sec. 3); a sweep file overrides what it needs. Data and validation only:
what a run costs (steps, images, tokens, FLOPs) is `scaling.training.budget`.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, ClassVar, Literal

from scaling.core.config_io import InvalidValue, build, load_yaml
from scaling.core.tracking import WandbConfig


def _positive(name: str, value: float | int | None, *, allow_zero: bool = False) -> None:
    if value is None:
        return
    if value < 0 or (value == 0 and not allow_zero):
        raise InvalidValue(name, f"must be {'>= 0' if allow_zero else '> 0'}, got {value}")


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """The VAR transformer (var_core.VAR arguments; None = the official rule for the depth)."""

    depth: int = 16  # transformer depth d (the size axis of a study)
    width: int | None = None  # official: 64 * depth
    heads: int | None = None  # official: depth (head dim 64)
    mlp_ratio: float = 4.0  # MLP hidden width / width
    drop_path: float | None = None  # official: 0.1 * depth / 24
    attn_l2_norm: bool = True  # attention with L2-normalised q, k (official)
    shared_aln: bool = False  # one AdaLN for all blocks (the official variant is per block)
    cond_drop: float = 0.1  # class dropout for classifier-free guidance (training only)
    init_adaln: float = 0.5  # official initialisation scale of the AdaLN rows
    init_adaln_gamma: float = 1e-5  # official recipes use 1e-3 for d16/d20
    init_head: float = 0.02  # official initialisation scale of the head
    init_std: float | None = None  # official: sqrt(1 / (3 * width))

    def __post_init__(self):
        _positive("depth", self.depth)
        _positive("width", self.width)
        _positive("heads", self.heads)
        _positive("mlp_ratio", self.mlp_ratio)
        if self.width is not None and self.width % (self.heads or self.depth):
            raise InvalidValue(
                "width",
                f"{self.width} is not divisible by the number of heads "
                f"({self.heads or self.depth})",
            )
        for name in ("init_adaln", "init_adaln_gamma", "init_head"):
            _positive(name, getattr(self, name), allow_zero=True)
        _positive("init_std", self.init_std)
        if not 0 <= self.cond_drop < 1:
            raise InvalidValue("cond_drop", f"must be in [0, 1), got {self.cond_drop}")
        if self.drop_path is not None and not 0 <= self.drop_path < 1:
            raise InvalidValue("drop_path", f"must be in [0, 1), got {self.drop_path}")

    def var_kwargs(
        self, *, num_classes: int, vocab_size: int, z_channels: int, patch_nums: tuple[int, ...]
    ) -> dict[str, Any]:
        """Keyword arguments for `var_core.VAR` (the data fixes classes, vocab and scales)."""
        return dict(
            depth=self.depth,
            width=self.width,
            heads=self.heads,
            mlp_ratio=self.mlp_ratio,
            drop_path=self.drop_path,
            attn_l2_norm=self.attn_l2_norm,
            shared_aln=self.shared_aln,
            cond_drop=self.cond_drop,
            init_adaln=self.init_adaln,
            init_adaln_gamma=self.init_adaln_gamma,
            init_head=self.init_head,
            init_std=self.init_std,
            num_classes=num_classes,
            vocab_size=vocab_size,
            z_channels=z_channels,
            patch_nums=tuple(patch_nums),
        )


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """Where the tokens come from; training refuses a store that does not match."""

    store: Path  # token store directory (scaling.token_store)
    train_split: str = "train"  # the store's split trained on
    eval_split: str = "val"  # the store's split evaluated on
    vqvae_sha256: str | None = None  # when set, the store must have been made with this VQVAE
    vocab_size: int | None = None  # when set, checked against the store
    patch_nums: tuple[int, ...] | None = None  # when set, checked against the store
    # augmented views of the train split (scaling.tokenize --views K): when set, the store's
    # train split must hold exactly this many views per image; None = whatever it holds.
    # Training reads one view per image per epoch (view_draw); budgets count images, never views.
    # "online": no stored train tokens; each step encodes a fresh random crop of each image of
    # `images`/<train_split> with the VQVAE `vqvae` (default: the store's), as the official
    # trainer does (scaling.online_views); the store still gives the eval split and quantizer.
    views: int | Literal["online"] | None = None
    flip: bool | None = None  # when set, the store's train split must (not) hold mirrors
    transform: Literal["center_crop", "random_crop"] | None = None  # when set, checked too
    images: Path | None = None  # views online: the folder holding <train_split>/<class>/...
    vqvae: Path | None = None  # views online: the VQVAE checkpoint (default: the store's)
    # train on a seeded subset of the train split's images: a count (a whole number >= 1) or
    # a fraction (< 1, rounded to whole images). The same images in every process, on resume
    # and in every run with the same subset_seed; class-balanced and nested (a smaller subset
    # lies inside a larger one). Epochs, passes and budgets then count the subset's images.
    subset: int | float | None = None
    subset_seed: int = 0  # which subset (independent of the run's seed)
    # train on the first this many stored views of each image (None: all the store holds):
    # a K-view store serves every k <= K, and its first k views are a k-view store's
    use_views: int | None = None
    # how an image's stored views are read over epochs: "permutation", every view once before
    # any repeats (each of K views seen floor(E/K) or ceil(E/K) times in E epochs); or
    # "independent", a fresh uniform draw each epoch, the stored analogue of the official
    # trainer's fresh crop per step (docs/data.md says why the default differs)
    view_draw: Literal["permutation", "independent"] = "permutation"

    def __post_init__(self):
        _positive("vocab_size", self.vocab_size)
        if self.subset is not None and (
            isinstance(self.subset, bool)
            or self.subset <= 0
            or (self.subset >= 1 and not float(self.subset).is_integer())
        ):
            raise InvalidValue(
                "subset",
                f"must be a whole number of images >= 1 or a fraction in (0, 1), "
                f"got {self.subset!r}",
            )
        _positive("subset_seed", self.subset_seed, allow_zero=True)
        if self.use_views is not None and (isinstance(self.use_views, bool) or self.use_views < 1):
            raise InvalidValue("use_views", f"must be a whole number >= 1, got {self.use_views!r}")
        if self.use_views is not None and self.views == "online":
            raise InvalidValue("use_views", "online views store no views to choose from")
        if (
            self.use_views is not None
            and isinstance(self.views, int)
            and self.use_views > self.views
        ):
            raise InvalidValue(
                "use_views",
                f"{self.use_views} views asked of a store that must hold {self.views} (data.views)",
            )
        if (
            self.views != "online"
            and self.views is not None
            and (isinstance(self.views, bool) or not isinstance(self.views, int) or self.views < 1)
        ):
            raise InvalidValue(
                "views",
                f"must be a whole number >= 1 (1 = one centre crop) or "
                f"'online', got {self.views!r}",
            )
        if self.views == "online" and self.images is None:
            raise InvalidValue(
                "images",
                "data.views: online needs data.images, the folder "
                "holding the train split's class folders",
            )
        if self.views == "online" and (self.flip or self.transform == "center_crop"):
            raise InvalidValue(
                "views",
                "online views are random crops without flips (the "
                "official transform); drop data.flip / data.transform",
            )

    def subset_images(self, split_images: int) -> int:
        """Images a run trains on from a train split of `split_images` images
        (`subset_count`)."""
        return subset_count(self.subset, split_images, self.train_split)


def subset_count(subset: int | float | None, split_images: int, split: str = "train") -> int:
    """The one rule of `data.subset`: images trained on from a split of `split_images`: the
    subset's count (a fraction rounded, at least 1), else the whole split. Raises InvalidValue
    (key data.subset) when the subset is larger than the split."""
    if subset is None:
        return int(split_images)
    if subset < 1:
        return max(1, round(subset * split_images))
    count = int(subset)
    if count > split_images:
        raise InvalidValue(
            "subset",
            f"{count} images asked, but the train split {split!r} holds {split_images}",
        )
    return count


@dataclasses.dataclass(frozen=True)
class OptimConfig:
    """AdamW and the schedules of the official trainer."""

    # the learning rate has one key, base_lr; its other spellings (the official trainer's
    # "tblr", a peak "lr") are refused with an error that names it
    RENAMED: ClassVar[dict[str, str]] = {
        old: "base_lr; the peak lr is base_lr x batch_size / 256"
        for old in ("lr", "tblr", "blr", "peak_lr", "learning_rate")
    }

    batch_size: int = 768  # global batch, whatever the number of GPUs
    base_lr: float = 1e-4  # "tblr": lr = base_lr * batch_size / 256
    betas: tuple[float, float] = (0.9, 0.95)  # AdamW
    eps: float = 1e-8  # AdamW
    weight_decay: float = 0.05  # AdamW decoupled weight decay
    weight_decay_end: float | None = None  # cosine-annealed to this ("twde"); None = constant
    grad_clip: float = 2.0  # global norm; 0 = off
    warmup_frac: float = 0.02  # official: ep/50 epochs of warm-up
    warmup_start: float = 0.005  # lr factor at step 0 ("wp0")
    hold_frac: float = 0.05  # peak held for this fraction of the post-warm-up steps
    final_lr_frac: float = 0.01  # "wpe": lr at the end / peak (0.1 for d16/d20 recipes)
    label_smoothing: float = 0.0  # of the training cross-entropy
    # "lin0": the official warm-up, hold, linear decay (hold_frac). "wsd": warm-up, constant,
    # cool-down over the last `cooldown_frac` of the steps (Hagele et al. 2024): its
    # stable-phase states can start decay branches (RunConfig.save_at / branch).
    schedule: Literal["lin0", "wsd"] = "lin0"
    warmup_steps: int | None = None  # absolute warm-up length; overrides warmup_frac when set
    cooldown_frac: float = 0.2  # wsd: fraction of the run's steps spent cooling down
    cooldown_steps: int | None = None  # wsd: absolute cool-down length; overrides cooldown_frac
    cooldown_shape: Literal["linear", "1-sqrt", "cosine"] = "linear"  # wsd: shape to final_lr_frac

    def __post_init__(self):
        _positive("batch_size", self.batch_size)
        _positive("base_lr", self.base_lr)
        _positive("weight_decay", self.weight_decay, allow_zero=True)
        _positive("weight_decay_end", self.weight_decay_end, allow_zero=True)
        _positive("grad_clip", self.grad_clip, allow_zero=True)
        _positive("eps", self.eps)
        for name in ("final_lr_frac", "warmup_start", "cooldown_frac"):
            value = getattr(self, name)
            if not 0 <= value <= 1:
                raise InvalidValue(name, f"must be in [0, 1], got {value}")
        # 1 makes no sense for these: no steps left to train at (warm-up), to decay over
        # (hold: the lr formula divides by 1 - hold_frac), or no target left (smoothing)
        for name in ("warmup_frac", "hold_frac", "label_smoothing"):
            value = getattr(self, name)
            if not 0 <= value < 1:
                raise InvalidValue(name, f"must be in [0, 1), got {value}")
        _positive("warmup_steps", self.warmup_steps, allow_zero=True)
        _positive("cooldown_steps", self.cooldown_steps)
        if self.schedule == "wsd":
            if self.cooldown_steps is None and self.cooldown_frac <= 0:
                raise InvalidValue("cooldown_frac", "a WSD schedule needs a cool-down: must be > 0")
            if (
                self.warmup_steps is None
                and self.cooldown_steps is None
                and self.warmup_frac + self.cooldown_frac > 1
            ):
                raise InvalidValue(
                    "cooldown_frac",
                    f"cool-down {self.cooldown_frac} is longer than "
                    f"the run after its warm-up ({1 - self.warmup_frac:g} of the steps)",
                )
            if self.weight_decay_end is not None and self.weight_decay_end != self.weight_decay:
                raise InvalidValue(
                    "weight_decay_end",
                    "a WSD run keeps its weight decay constant "
                    "(a cosine over the run length would differ between its decay "
                    "branches); leave weight_decay_end unset",
                )
        if not all(0 <= b < 1 for b in self.betas):
            raise InvalidValue("betas", f"each must be in [0, 1), got {list(self.betas)}")

    @property
    def peak_lr(self) -> float:
        return self.base_lr * self.batch_size / 256


@dataclasses.dataclass(frozen=True)
class LengthConfig:
    """Training length: exactly one of these is set."""

    epochs: float | None = None  # passes over the train images (exactly one length is given)
    steps: int | None = None  # optimizer steps
    images: int | None = None  # training images seen
    tokens: int | None = None  # training tokens seen
    flops: float | None = None  # training FLOPs, exact count (var_core.counting)

    def __post_init__(self):
        given = [f.name for f in dataclasses.fields(self) if getattr(self, f.name) is not None]
        if len(given) != 1:
            name = given[1] if len(given) > 1 else "steps"
            raise InvalidValue(
                name,
                "give exactly one training length (epochs, steps, images, "
                f"tokens or flops); got {given or 'none'}",
            )
        _positive(given[0], getattr(self, given[0]))


@dataclasses.dataclass(frozen=True)
class EvalConfig:
    """When and on what the test metrics are measured.

    `precision`: fp32 (default; TF32 matmuls allowed on CUDA, as the official evaluation) or
    bf16 autocast (cheaper; moves cross-entropy by ~1e-3). Class dropout is always off at
    evaluation (docs/specification.md, sec. 6), unlike the official `eval_ep` (docs/fitting.md).
    """

    points: int = 12  # full evaluations, evenly spaced in log(compute), always incl. the last step
    first_frac: float = 0.01  # the first at this fraction of the training compute
    max_images: int | None = None  # None = the whole test split
    subset_points: int = 0  # extra cheap evaluations (log-spaced) on a subset of the test split
    subset_images: int = 1000  # test images of each subset evaluation
    batch_size: int = 256  # per rank
    precision: Literal["fp32", "bf16"] = "fp32"

    def __post_init__(self):
        _positive("points", self.points)
        _positive("subset_points", self.subset_points, allow_zero=True)
        _positive("max_images", self.max_images)
        _positive("subset_images", self.subset_images)
        _positive("batch_size", self.batch_size)
        if not 0 < self.first_frac <= 1:
            raise InvalidValue("first_frac", f"must be in (0, 1], got {self.first_frac}")


@dataclasses.dataclass(frozen=True)
class BranchConfig:
    """This run is a decay branch: it starts from `parent`'s stable-phase state at fraction
    `at` of the parent's length and cools down over `cooldown` of its own length.

    With T the parent's steps (same length config), the branch point is s = round(at * T) and
    the branch trains to s + round(s * cooldown / (1 - cooldown)) steps: exactly the parent's
    WSD schedule truncated at s (warm-up from T), then the cool-down.
    """

    parent: str  # the parent's run directory: a sibling folder name, or a path
    at: float  # fraction of the parent's length where the branch leaves it
    cooldown: float = 0.2  # fraction of the branch's own length spent cooling down

    def __post_init__(self):
        if not 0 < self.at < 1:
            raise InvalidValue(
                "at",
                f"a branch point is a fraction of the parent's length in (0, 1), got {self.at}",
            )
        if not 0 < self.cooldown < 1:
            raise InvalidValue(
                "cooldown",
                f"must be in (0, 1) (a fraction of the branch's own length), got {self.cooldown}",
            )


@dataclasses.dataclass(frozen=True)
class RuntimeConfig:
    """How the run executes; nothing here changes what is learned (on CPU, bit for bit)."""

    device: Literal["auto", "cpu", "cuda"] = "auto"  # cuda when present
    precision: Literal["auto", "fp32", "bf16"] = "auto"  # auto: bf16 autocast on CUDA, fp32 on CPU
    attn_backend: Literal["auto", "sdpa", "flex", "math"] = (
        "auto"  # math: explicit matmuls (reference)
    )
    compile: bool = False  # torch.compile the model and loss
    tf32: bool | None = (
        None  # TF32 for fp32 matmuls/convs; None = on for CUDA (scaling.core.runtime)
    )
    activation_checkpointing: bool = False  # recompute each block's activations in backward
    fsdp: bool = False  # shard parameters, gradients and optimizer state (FSDP2)
    micro_batch: int | None = None  # per-rank micro-batch (gradient accumulation); None = all
    checkpoint_every_steps: int | None = None  # also checkpoint every k steps (None: by time only)
    # checkpoint interval (also on SIGUSR2/SIGTERM and at the end)
    checkpoint_every_s: float = 900.0
    log_every_s: float = 30.0  # progress-line interval in the job log
    # several processes: rank 0's save/stop decisions are broadcast every this many steps
    # (a SIGUSR2/SIGTERM is honoured within it); one process decides every step for free
    agree_every_steps: int = 10
    # several processes: a collective waiting longer fails the job (a crashed or lost rank
    # must not hang the others); None = scaling.core.runtime's choice
    collective_timeout_s: float | None = None
    num_threads: int | None = None  # torch CPU threads; None = scaling.runtime's choice (CPU: 1)
    # keep every training row's teacher-forcing input on the device when it fits (0 = never)
    input_cache_mb: float = 256.0
    tensorboard: bool = True  # event files in the run directory (scaling.tracking)
    scalars_every_steps: int | None = None  # training scalars every k steps; None = ~200 per run
    wandb: WandbConfig | None = None  # also log to W&B: {project: NAME, mode: offline}

    def __post_init__(self):
        _positive("micro_batch", self.micro_batch)
        _positive("scalars_every_steps", self.scalars_every_steps)
        _positive("checkpoint_every_steps", self.checkpoint_every_steps)
        _positive("checkpoint_every_s", self.checkpoint_every_s)
        _positive("log_every_s", self.log_every_s)
        _positive("num_threads", self.num_threads)
        _positive("agree_every_steps", self.agree_every_steps)
        _positive("collective_timeout_s", self.collective_timeout_s)
        _positive("input_cache_mb", self.input_cache_mb, allow_zero=True)


@dataclasses.dataclass(frozen=True)
class SamplesConfig:
    """Sample-quality evaluation of the trained model (`python -m scaling.sample_eval RUN_DIR`).

    Defaults are the official FID settings for ImageNet: 50 samples per class, cfg 1.5,
    top-k 900, top-p 0.96. `features`: "inception" (FID, IS, precision, recall with the
    TF-compatible Inception of torch-fidelity, weights from the local file `inception_weights`)
    or "classifier" (the demo's small classifier at `classifier`: class accuracy of the
    samples and the Frechet distance in its feature space). `reference`: a val image folder,
    or an .npz with `mu`, `sigma` (reference statistics) and/or `arr_0` (uint8 images
    [N, H, W, 3], as the ADM reference batches). Nothing is downloaded.
    """

    after_training: bool = False  # the launcher's job runs it when training is done
    per_class: int = 50  # samples per class (a balanced set)
    classes: int | None = None  # None: every class of the token store
    cfg: float = 1.5  # classifier-free guidance scale
    top_k: int = 900  # sampler top-k
    top_p: float = 0.96  # sampler top-p
    seed: int = 0  # sampling seed
    batch_size: int = 64  # samples per forward pass
    shard_size: int = 1000  # images per .npz shard of the sample folder (resumable unit)
    # feature network: TF-FID Inception or the demo's classifier
    features: Literal["inception", "classifier"] = "inception"
    # local weights file of the TF-FID Inception (never downloaded)
    inception_weights: str | None = None
    classifier: str | None = None  # features classifier: its checkpoint (scaling.classifier)
    reference: str | None = None  # reference images: a val folder or an .npz of feature statistics
    reference_images: int | None = None  # cap on reference images read (None = all)

    def __post_init__(self):
        _positive("per_class", self.per_class)
        _positive("classes", self.classes)
        _positive("seed", self.seed, allow_zero=True)
        _positive("cfg", self.cfg, allow_zero=True)
        _positive("top_k", self.top_k, allow_zero=True)
        _positive("batch_size", self.batch_size)
        _positive("shard_size", self.shard_size)
        _positive("reference_images", self.reference_images)
        if not 0 <= self.top_p <= 1:
            raise InvalidValue("top_p", f"must be in [0, 1] (0 = off), got {self.top_p}")


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """Everything that defines one training run."""

    run_id: str  # the run's folder name (the sweep's run id)
    data: DataConfig  # the token store the run trains on
    model: ModelConfig = ModelConfig()
    optim: OptimConfig = OptimConfig()
    length: LengthConfig = LengthConfig(epochs=1.0)
    eval: EvalConfig = EvalConfig()
    runtime: RuntimeConfig = RuntimeConfig()
    samples: SamplesConfig = SamplesConfig()
    seed: int = 0  # initialisation, data order, class dropout
    # WSD runs: keep the stable-phase state at these fractions of the length (decay branches
    # start from <run_dir>/stable/step_<s>.pt); must lie before the cool-down
    save_at: tuple[float, ...] = ()
    branch: BranchConfig | None = None

    def __post_init__(self):
        if not self.run_id or "/" in self.run_id or self.run_id in (".", ".."):
            raise InvalidValue("run_id", f"must be a plain folder name, got {self.run_id!r}")
        if self.seed < 0:
            raise InvalidValue("seed", f"must be >= 0, got {self.seed}")
        steps = self.length.steps
        if steps is not None and self.eval.points > steps:
            raise InvalidValue(
                "eval.points",
                f"{self.eval.points} evaluations but the run has only {steps} steps (length.steps)",
            )
        if steps is not None and self.eval.subset_points > steps:
            raise InvalidValue(
                "eval.subset_points",
                f"{self.eval.subset_points} evaluations but the run has only {steps} steps",
            )
        if (
            self.runtime.micro_batch is not None
            and self.runtime.micro_batch > self.optim.batch_size
        ):
            raise InvalidValue(
                "runtime.micro_batch",
                f"{self.runtime.micro_batch} is larger "
                f"than optim.batch_size {self.optim.batch_size}",
            )
        if (self.save_at or self.branch is not None) and self.optim.schedule != "wsd":
            raise InvalidValue(
                "save_at" if self.save_at else "branch",
                f"decay branches need optim.schedule: wsd (got "
                f"{self.optim.schedule!r}): only a constant-rate phase can be branched",
            )
        for f in self.save_at:
            if not 0 < f < 1:
                raise InvalidValue(
                    "save_at", f"branch points are fractions of the run's length in (0, 1), got {f}"
                )
            if self.optim.cooldown_steps is None and f > 1 - self.optim.cooldown_frac:
                raise InvalidValue(
                    "save_at",
                    f"branch point {f} lies in the cool-down (which "
                    f"starts at {1 - self.optim.cooldown_frac:g} of the run)",
                )
        if self.branch is not None and self.save_at:
            raise InvalidValue("save_at", "a decay branch cannot itself be branched")


def load_run_config(path: str | Path) -> RunConfig:
    """Read a run's `config.yaml`."""
    data, loc = load_yaml(path)
    return build(RunConfig, data, loc)
