"""What a run costs, computed in one place: `RunBudget`, from a run config and store metadata.

    budget = run_budget(config, read_meta(store))
    budget.steps, budget.images, budget.tokens, budget.flops     # what the last record will hold
    budget.own_flops, budget.eval_flops, budget.passes           # what the run itself spends

The trainer lays out its steps, evaluations and compute columns from it; the launch table,
the repeated-data warning, submit's token budget and the planner read it; a finished run's
last metrics.jsonl line equals it (tests/training/test_budget.py). Torch-free, so the study's
CLIs price runs without torch. The per-image counts come from `var_core.counting`, the one
home of the FLOP conventions; this module turns them into a run's totals:

    images     steps x batch_size
    tokens     images x L                                   (L = counting.tokens_per_image)
    flops      images x counting.train_flops_per_image      (3 x the exact forward count)
    flops_6nd  6 N tokens                                   (counting.flops_6nd)
    eval_flops forward FLOPs per image x images evaluated, over the run's own evaluations

A decay branch starts from its parent's stable-phase state after `start_step` steps: its
steps, images, tokens and flops count the parent's steps up to there too (as its records and
`scaling.fit` do); the `own_*` counts are what the branch trains itself (its GPU-hours).
Epochs count images of the train split, never its stored views or flip copies; passes count
how often each stored token sequence is seen (epochs / (views x flips)). A run on a subset of
the split (`data.subset`) counts the subset's images (`train_images`, and `unique_tokens` =
train_images x L), and one using some of the stored views (`data.use_views`) those views.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any

from scaling.core.config_io import InvalidValue
from scaling.data.token_store import TokenStoreError, images_in_split, used_rows
from scaling.training import schedule
from scaling.training.config import EvalConfig, LengthConfig, ModelConfig, RunConfig
from var_core import counting

# Repeated data: each distinct training sequence seen more often than this many times marks
# the data-limited regime (Muennighoff et al. 2023, "Scaling Data-Constrained Language Models":
# up to ~4 epochs of repetition are almost as good as unique data, beyond that returns fall).
REPEAT_EPOCHS_OK = 4.0


@dataclasses.dataclass(frozen=True)
class ImageCounts:
    """Per-image counts of one VAR (its constructor kwargs): N, L and FLOPs."""

    params: int  # N, parameters (buffers excluded)
    tokens: int  # L, tokens per image over all scales
    forward_flops: int  # teacher-forced forward (evaluation) FLOPs per image
    train_flops: int  # training FLOPs per image (forward + backward)

    @classmethod
    def of(cls, var_kwargs: dict[str, Any]) -> ImageCounts:
        """The counts of `var_core.VAR(**var_kwargs)`, from its shapes alone."""
        return cls(
            params=counting.params(**var_kwargs),
            tokens=counting.tokens_per_image(var_kwargs["patch_nums"]),
            forward_flops=counting.forward_flops(**var_kwargs),
            train_flops=counting.train_flops_per_image(**var_kwargs),
        )


@dataclasses.dataclass(frozen=True)
class Progress:
    """The compute after `step` optimizer steps: the compute columns of a metrics record."""

    step: int
    images: int
    tokens: int
    flops: int  # exact training FLOPs
    flops_6nd: int  # 6 N tokens

    def columns(self) -> dict[str, int]:
        """The columns as metrics.jsonl names them."""
        return dataclasses.asdict(self)


def progress(step: int, batch_size: int, counts: ImageCounts) -> Progress:
    """The compute after `step` optimizer steps of `batch_size` images."""
    images = step * batch_size
    tokens = images * counts.tokens
    return Progress(
        step=step,
        images=images,
        tokens=tokens,
        flops=counts.train_flops * images,
        flops_6nd=counting.flops_6nd(counts.params, tokens),
    )


def var_kwargs_from_store(model: ModelConfig, store_meta: dict[str, Any]) -> dict[str, Any]:
    """`var_core.VAR` keyword arguments for `model` on a token store, from its `meta.json`
    contents (or a stand-in with the same keys): the store fixes the classes, the vocabulary,
    the scales and the VQVAE's code width (z_channels). Raises TokenStoreError naming a
    missing key."""

    def need(*keys: str) -> Any:
        node: Any = store_meta
        for key in keys:
            if not isinstance(node, dict) or key not in node:
                raise TokenStoreError(
                    f"token store meta.json lacks {'.'.join(keys)}, which the "
                    f"VAR model needs (re-tokenise with python -m scaling.tokenize)"
                )
            node = node[key]
        return node

    return model.var_kwargs(
        num_classes=int(need("num_classes")),
        vocab_size=int(need("vocab_size")),
        z_channels=int(need("vqvae_config", "z_channels")),
        patch_nums=tuple(need("patch_nums")),
    )


def length_steps(
    length: LengthConfig, *, train_images: int, batch_size: int, counts: ImageCounts
) -> int:
    """Optimizer steps that `length` means for a split of `train_images` images and a model
    of these per-image counts (at least 1). A decay branch shares its parent's length, so
    for a branch this is its parent's step count."""
    if length.steps is not None:
        steps: float = length.steps
    elif length.epochs is not None:
        steps = round(length.epochs * train_images / batch_size)
    elif length.images is not None:
        steps = math.ceil(length.images / batch_size)
    elif length.tokens is not None:
        steps = math.ceil(length.tokens / (counts.tokens * batch_size))
    else:
        assert length.flops is not None  # LengthConfig holds exactly one length
        steps = math.floor(length.flops / (counts.train_flops * batch_size))
    return max(1, int(steps))


@dataclasses.dataclass(frozen=True)
class RunBudget:
    """What one run costs: its inputs are fields, every count is derived from them.

    `plan` is the schedule laid out on the run's steps (`schedule.plan`): `plan.total_steps`
    is the run's last step and `plan.start_step` where a decay branch starts (else 0).
    """

    run_id: str
    counts: ImageCounts  # per image: N, L, forward and training FLOPs
    batch_size: int  # images per optimizer step (global)
    plan: schedule.Plan
    train_images: int  # images trained on: the train split's, or its subset's (epochs count these)
    rows_per_image: int  # stored token sequences read per train image (views used x flips)
    split_images: int  # images of the whole train split (= train_images without a subset)
    views: int  # stored views per image the run reads (1: one view, or views made online)
    eval: EvalConfig  # when and on how many images the run evaluates
    eval_split_images: int  # rows of the evaluation split

    # ------------------------------------------------------------ the whole run
    @property
    def params(self) -> int:
        """N, the model's parameters."""
        return self.counts.params

    @property
    def steps(self) -> int:
        """The run's last step (a branch: counted from its parent's step 0)."""
        return self.plan.total_steps

    @property
    def start_step(self) -> int:
        """A decay branch starts from its parent's state after this many steps (else 0)."""
        return self.plan.start_step

    def at(self, step: int) -> Progress:
        """The compute behind the run's state after `step` steps."""
        return progress(step, self.batch_size, self.counts)

    @property
    def images(self) -> int:
        """Images trained on behind the last step (a branch: its parent's included)."""
        return self.at(self.steps).images

    @property
    def tokens(self) -> int:
        """Tokens trained on behind the last step (a branch: its parent's included)."""
        return self.at(self.steps).tokens

    @property
    def flops(self) -> int:
        """Exact training FLOPs behind the last step (a branch: its parent's included)."""
        return self.at(self.steps).flops

    @property
    def flops_6nd(self) -> int:
        """6 N tokens behind the last step."""
        return self.at(self.steps).flops_6nd

    @property
    def epochs(self) -> float:
        """Passes over the train split's images (never its stored views) behind the last step."""
        return self.images / self.train_images

    @property
    def passes(self) -> float:
        """How many times each stored token sequence is seen: epochs / (views x flips)."""
        return self.epochs / self.rows_per_image

    @property
    def unique_tokens(self) -> int:
        """U: distinct images trained on x L (one view each; the subset's with data.subset)."""
        return self.train_images * self.counts.tokens

    # ------------------------------------------------------- what the run spends
    @property
    def own_steps(self) -> int:
        """Steps the run trains itself (a branch: its cool-down)."""
        return self.steps - self.start_step

    @property
    def own_images(self) -> int:
        """Images the run itself trains on."""
        return self.own_steps * self.batch_size

    @property
    def own_tokens(self) -> int:
        """Tokens the run itself trains on."""
        return self.own_images * self.counts.tokens

    @property
    def own_flops(self) -> int:
        """Training FLOPs the run itself spends."""
        return self.own_images * self.counts.train_flops

    @functools.cached_property
    def evals(self) -> dict[int, str]:
        """step -> "full" | "subset": the run's own evaluations, exactly as the trainer makes
        them (a branch: after its start only; its parent measured the ones before)."""
        return {
            s: kind
            for s, kind in schedule.eval_schedule(self.steps, self.eval).items()
            if s > self.start_step
        }

    @property
    def full_eval_steps(self) -> list[int]:
        """The steps of the run's own full evaluations."""
        return [s for s, kind in self.evals.items() if kind == "full"]

    def eval_images(self, kind: str) -> int:
        """Test images one evaluation of `kind` ("full" / "subset") reads."""
        limit = self.eval.max_images if kind == "full" else self.eval.subset_images
        n = self.eval_split_images
        return n if limit is None else min(int(limit), n)

    @property
    def eval_flops(self) -> int:
        """Forward FLOPs x images evaluated, over the run's own evaluations."""
        return self.counts.forward_flops * sum(self.eval_images(k) for k in self.evals.values())

    def gpu_hours(self, tflops_per_gpu: float) -> float:
        """GPU-hours of the run's own training and evaluation at this sustained rate."""
        return (self.own_flops + self.eval_flops) / (tflops_per_gpu * 1e12) / 3600.0

    # ------------------------------------------------------------ other layouts
    def laid_out(self, config: RunConfig, length: int) -> RunBudget:
        """The same model and data with `config`'s schedule laid out on `length` steps
        (`schedule.plan`; a branch: its parent's steps): the planner's alternatives."""
        return dataclasses.replace(
            self,
            run_id=config.run_id,
            plan=schedule.plan(config, length),
            eval=config.eval,
            batch_size=config.optim.batch_size,
        )

    def from_scratch(self) -> RunBudget:
        """This run trained from step 0 (a branch without its parent's state)."""
        return dataclasses.replace(self, plan=dataclasses.replace(self.plan, start_step=0))


def run_budget(
    config: RunConfig, store_meta: dict[str, Any], *, train_images: int | None = None
) -> RunBudget:
    """The budget of `config` on the token store described by `store_meta` (its meta.json
    contents, or a sweep's `data.expect` stand-in with the same keys).

    `train_images`: the train split's image count when the store does not hold it (views
    made online: the image folder's count); `data.subset` takes its images from these.
    Raises TokenStoreError naming a missing key, a subset larger than the split or more
    `data.use_views` than the store holds; ScheduleError when the schedule does not fit the
    run's steps.
    """
    counts = ImageCounts.of(var_kwargs_from_store(config.model, store_meta))
    splits = store_meta.get("splits", {})
    train = splits.get(config.data.train_split)
    if train is None and train_images is None:
        raise TokenStoreError(
            f"token store meta.json has no split {config.data.train_split!r} "
            f"(data.train_split); it has {sorted(splits)}"
        )
    split_images = images_in_split(train) if train_images is None else train_images
    try:
        train_images = config.data.subset_images(split_images)
    except InvalidValue as e:
        raise TokenStoreError(f"run {config.run_id}: data.{e.field}: {e.message}") from None
    online = config.data.views == "online" or train is None
    rows = 1 if online else used_rows(train, config.data.use_views)
    views = 1 if online else config.data.use_views or int(train.get("views", 1))
    batch = config.optim.batch_size
    steps = length_steps(config.length, train_images=train_images, batch_size=batch, counts=counts)
    return RunBudget(
        run_id=config.run_id,
        counts=counts,
        batch_size=batch,
        plan=schedule.plan(config, steps),
        train_images=train_images,
        rows_per_image=rows,
        split_images=split_images,
        views=views,
        eval=config.eval,
        eval_split_images=int(splits.get(config.data.eval_split, {}).get("count", 0)),
    )
