"""The sweep file's sections as typed dataclasses: data, preparation stages, rules, cluster,
decay branches and the sweep itself (`SweepSpec`).

Each dataclass checks its own values (`InvalidValue`, located in the file by
`scaling.core.config_io.build`); checks across sections, and the expansion into runs, live
in `scaling.study.sweep.sweep` and `scaling.study.sweep.expand`. See sweeps/depth_grid.yaml for a
commented example of every section.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any, Literal

from scaling.core.config_io import InvalidValue

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,79}$")
# where the sweep's special axes live in a run config
AXIS_KEYS = {"depth": "model.depth", "seed": "seed"}
# run-id labels of common axes (by the key's last part) where `labels:` names none
DEFAULT_LABELS = {
    "depth": "d",
    "seed": "s",
    "base_lr": "lr",
    "batch_size": "b",
    "epochs": "ep",
    "steps": "st",
    "images": "im",
    "tokens": "tok",
    "flops": "c",
    "subset": "n",
    "use_views": "k",
}
# cluster keys that rules and overrides may set per run (the resource shape of a job)
RESOURCE_KEYS = (
    "nodes",
    "gpus_per_node",
    "tasks_per_node",
    "cpus_per_task",
    "mem_gb",
    "time_min",
    "partition",
    "qos",
    "constraint",
    "account",
)
DATA_DIR = "_data"  # prepared data (images, VQVAE, token store) under the output folder
# the grid axis of a sweep's tokenizer variants (`tokenizers:`): each value names a variant,
# whose prepared data live in <output>/_data/<variant>/; its run-id piece is the name alone
TOKENIZER_AXIS = "tokenizer"
# folders of <output>/_data shared by all variants: no variant may take their names
RESERVED_DATA_NAMES = ("images", "classifier", "jobs", "vqvae", "tokens")


def prepared_dir(output: Path, tokenizer: str | None = None) -> Path:
    """Where a sweep's prepared VQVAE and token store live: `<output>/_data`, or
    `<output>/_data/<tokenizer>` for a variant of `tokenizers:`."""
    return output / DATA_DIR if tokenizer is None else output / DATA_DIR / tokenizer


def _check_name(field: str, value: str, what: str) -> None:
    if not NAME_RE.match(value) or ".." in value:
        raise InvalidValue(
            field,
            f"{what} {value!r} must be a plain name: letters, digits, "
            "'.', '_', '-' (no '/', no '..'), at most 80 characters",
        )


def _positive(obj: Any, *fields: str, allow_zero: bool = False) -> None:
    for f in fields:
        v = getattr(obj, f)
        if v is not None and (v < 0 or (v == 0 and not allow_zero)):
            raise InvalidValue(f, f"must be {'>= 0' if allow_zero else '> 0'}, got {v}")


@dataclasses.dataclass(frozen=True)
class StoreHint:
    """What the token store will hold, for estimates before it exists (ImageNet-1k 256px)."""

    train_images: int = 1_281_167  # train images (not views)
    val_images: int = 50_000  # the evaluation split (ImageNet-1k val); feeds evaluation FLOPs
    num_classes: int = 1000  # classes
    vocab_size: int = 4096  # VQVAE vocabulary
    patch_nums: tuple[int, ...] = (1, 2, 3, 4, 5, 6, 8, 10, 13, 16)  # scales of the token maps
    # augmented views per train image the store will hold (tokenize --views) and whether it
    # holds mirrors too (--flip); None: what the runs require (base.data.views / flip), else 1
    # and no mirrors, so a sweep writes its views once
    views: int | None = None
    flip: bool | None = None  # None: base.data.flip, else no mirrors
    z_channels: int = 32  # the VQVAE's code width (VAR's word_embed input)

    def __post_init__(self):
        _positive(
            self, "train_images", "val_images", "num_classes", "vocab_size", "views", "z_channels"
        )
        if not self.patch_nums or min(self.patch_nums) < 1:
            raise InvalidValue("patch_nums", "must be positive scale sizes")

    def meta(self) -> dict[str, Any]:
        """A stand-in for the store's meta.json (the keys `scaling.training.budget.run_budget`
        reads); views None counts as 1, flip None as no mirrors."""
        views, flip = self.views or 1, bool(self.flip)
        rows = self.train_images * views * (2 if flip else 1)
        return {
            "num_classes": self.num_classes,
            "vocab_size": self.vocab_size,
            "patch_nums": list(self.patch_nums),
            "vqvae_config": {"z_channels": self.z_channels},
            "splits": {
                "train": {
                    "count": rows,
                    "images": self.train_images,
                    "views": views,
                    "flip": flip,
                },
                "val": {"count": self.val_images},
            },
        }


@dataclasses.dataclass(frozen=True)
class DataSpec:
    """Where the training data comes from.

    Either `tokens` (an existing token store made by scaling.tokenize), or `images` (an
    ImageNet-style folder; None with `prepare.synthetic`) to be tokenised with the VQVAE
    checkpoint `vqvae` (None with `prepare.vqvae`: train one first). Relative paths are
    relative to the working directory. `expect` describes the store for the launch table's
    estimates while its meta.json cannot be read (not made yet, or on another machine);
    without it, it is derived from `prepare`, else ImageNet-1k at 256px is assumed.
    """

    tokens: Path | None = None  # an existing token store
    images: Path | None = None  # an image folder to tokenise
    vqvae: Path | None = None  # the VQVAE checkpoint that tokenises images
    # overrides what the launch table assumes before the store exists
    expect: StoreHint | None = None

    def __post_init__(self):
        if self.tokens is not None and (self.images is not None or self.vqvae is not None):
            raise InvalidValue(
                "tokens", "give either a token store (tokens) or images/vqvae to tokenise, not both"
            )


@dataclasses.dataclass(frozen=True)
class SyntheticSpec:
    """Generate the synthetic class-conditional image set (scaling.data.synthetic.generate)."""

    num_classes: int = 10  # classes of the synthetic set
    train_per_class: int = 100  # train images per class
    val_per_class: int = 20  # val images per class
    resolution: int = 64  # image side in pixels
    seed: int = 0  # generator seed

    def __post_init__(self):
        _positive(self, "num_classes", "train_per_class", "val_per_class", "resolution")


@dataclasses.dataclass(frozen=True)
class TokenizeSpec:
    """Tokenise the images with the VQVAE into the token store (scaling.tokenize)."""

    shards: int = 1  # tokenisation jobs in parallel
    batch_size: int = 64  # images per VQVAE batch
    views: int = 1  # views per train image (1 = one centre crop; K = K random crops)
    flip: bool = False  # also store each view's mirror (not the official recipe)
    view_seed: int = 0  # seed of the random crops

    def __post_init__(self):
        _positive(self, "shards", "batch_size", "views")


@dataclasses.dataclass(frozen=True)
class PrepareResources:
    """Resources of the preparation jobs (VQVAE training, tokenisation shards)."""

    gpus_per_node: int = 0  # GPUs per preparation job
    cpus_per_task: int = 1  # CPUs per preparation job
    mem_gb: float | None = None  # memory per job (None: the cluster's default)
    time_min: int = 60  # time limit per job

    def __post_init__(self):
        _positive(self, "cpus_per_task", "mem_gb", "time_min")
        _positive(self, "gpus_per_node", allow_zero=True)


@dataclasses.dataclass(frozen=True)
class ClassifierSpec:
    """Train the small classifier of the demo's sample metrics (scaling.classifier) on the
    sweep's images; it goes to `<output>/_data/classifier/classifier.pt`."""

    epochs: int = 2  # training epochs
    batch_size: int = 128  # images per step
    lr: float = 2e-3  # AdamW learning rate of the classifier
    width: int = 32  # conv width
    feature_dim: int = 64  # penultimate feature size
    seed: int = 0  # training seed

    def __post_init__(self):
        _positive(self, "epochs", "batch_size", "lr", "width", "feature_dim")


@dataclasses.dataclass(frozen=True)
class PrepareSpec:
    """Preparation stages, run as jobs that the training jobs depend on.

    `vqvae` holds the options of scaling.train_vqvae (checked by that module's config when
    the sweep is loaded); its checkpoint goes to `<output>/_data/vqvae/vqvae.pt`, synthetic images
    to `<output>/_data/images`, the token store to `<output>/_data/tokens`.
    """

    synthetic: SyntheticSpec | None = None  # generate the synthetic image set first
    # train a VQVAE first (its options: the VQVAE training keys below)
    vqvae: dict[str, Any] | None = None
    tokenize: TokenizeSpec = TokenizeSpec()  # tokenise the images into the token store
    classifier: ClassifierSpec | None = None  # train the demo's feature classifier (sample metrics)
    resources: PrepareResources = PrepareResources()  # resources of the preparation jobs


@dataclasses.dataclass(frozen=True)
class RuleSpec:
    """Values derived from the size: `set` applies to runs whose depth matches.

    A run matches when its depth is in `depths` (if given) and within [min_depth, max_depth]
    (bounds that are given). `set` maps run-config keys (dotted or nested) or `cluster.<key>`
    resource keys to values. (A rule's `why:` in the file is a note for its reader, e.g.
    "official d30 recipe"; `scaling.study.sweep.sweep` accepts it and keeps nothing of it.)
    """

    set: dict[str, Any]  # run-config keys to set
    depths: tuple[int, ...] | None = None  # the depths it applies to (or min/max_depth)
    min_depth: int | None = None  # applies from this depth
    max_depth: int | None = None  # applies up to this depth

    def __post_init__(self):
        if self.depths is None and self.min_depth is None and self.max_depth is None:
            raise InvalidValue("set", "a rule needs depths, min_depth or max_depth")
        if (
            self.min_depth is not None
            and self.max_depth is not None
            and self.min_depth > self.max_depth
        ):
            raise InvalidValue("min_depth", f"{self.min_depth} > max_depth {self.max_depth}")

    def matches(self, depth: int) -> bool:
        """Whether this rule applies to a run of this depth."""
        return (
            (self.depths is None or depth in self.depths)
            and (self.min_depth is None or depth >= self.min_depth)
            and (self.max_depth is None or depth <= self.max_depth)
        )


@dataclasses.dataclass(frozen=True)
class ClusterSpec:
    """How and where jobs run. Resource keys (see RESOURCE_KEYS) can be set per depth by
    rules and overrides (`cluster.nodes: 4`); the others hold for the whole sweep.

    backend: auto (SLURM when `sbatch` is found, else local), slurm, local (submitit's local
    executor: subprocesses on this machine), debug (in this process, one run after another).
    One task (process) per GPU; on CPUs one per node unless `tasks_per_node` says more
    (gloo: CPU multi-node runs, the simulated cluster of the tests); `cpus_per_task` CPUs
    each. `time_min` is the SLURM time limit: longer runs are requeued from their checkpoint
    (at most `max_requeues` times). `assumed_tflops_per_gpu` only feeds the GPU-hours
    estimate of the launch table and the planner; `assumed_gflops_per_cpu` the planner's
    CPU-hours of a study without GPUs.
    """

    backend: Literal["auto", "slurm", "local", "debug"] = "auto"
    partition: str | None = None  # SLURM partition
    account: str | None = None  # SLURM account
    qos: str | None = None  # SLURM QOS
    constraint: str | None = None  # SLURM constraint
    nodes: int = 1  # nodes per run
    gpus_per_node: int = 0  # GPUs per node
    tasks_per_node: int = 0  # 0: one per GPU (one on CPUs)
    cpus_per_task: int = 1  # CPUs per process
    mem_gb: float | None = None  # memory per node (None: the cluster's default)
    time_min: int = 60  # time limit per job; longer runs are requeued and resume
    array_parallelism: int = 64  # jobs running at once (local: the pool size)
    max_requeues: int = 20  # requeues on time-out or preemption (submitit)
    signal_delay_s: int = 120  # SIGUSR2 this long before the time limit (checkpoint, requeue)
    setup: tuple[str, ...] = ()  # shell lines run before each job
    sbatch: dict[str, str] = dataclasses.field(default_factory=dict)  # extra #SBATCH options
    assumed_tflops_per_gpu: float = 300.0  # for the launch table's GPU-hour estimate
    # a study without GPUs: the planner's CPU-hours (core-hours) at this rate per CPU core;
    # the demo trained at about 4.7 GFLOP/s per core (exact FLOPs over its runs' wall time)
    assumed_gflops_per_cpu: float = 5.0

    def __post_init__(self):
        _positive(
            self,
            "nodes",
            "cpus_per_task",
            "mem_gb",
            "time_min",
            "array_parallelism",
            "assumed_tflops_per_gpu",
            "assumed_gflops_per_cpu",
        )
        _positive(
            self,
            "gpus_per_node",
            "tasks_per_node",
            "max_requeues",
            "signal_delay_s",
            allow_zero=True,
        )
        if self.signal_delay_s >= 60 * self.time_min:
            raise InvalidValue(
                "signal_delay_s",
                f"{self.signal_delay_s} s is not less than the "
                f"time limit ({self.time_min} min): the job would "
                "be signalled before it starts",
            )
        if self.gpus_per_node and self.tasks_per_node not in (0, self.gpus_per_node):
            raise InvalidValue(
                "tasks_per_node",
                f"{self.tasks_per_node} tasks on nodes of {self.gpus_per_node} GPUs: one process "
                f"per GPU (leave tasks_per_node out, or set it to {self.gpus_per_node})",
            )
        if self.nodes > 1 and self.gpus_per_node == 0 and self.tasks_per_node == 0:
            raise InvalidValue(
                "nodes",
                f"{self.nodes} nodes without GPUs: multi-node runs need gpus_per_node >= 1 "
                "(or, on CPUs, tasks_per_node >= 1)",
            )
        for k in self.sbatch:
            if not re.match(r"^[a-z][a-z0-9_-]*$", k):
                raise InvalidValue(
                    "sbatch",
                    f"bad sbatch option name {k!r} (write it without '--', e.g. 'mail-type')",
                )

    @property
    def processes_per_node(self) -> int:
        """One process per GPU (on CPUs: `tasks_per_node`, default one)."""
        return self.tasks_per_node or max(1, self.gpus_per_node)

    @property
    def processes(self) -> int:
        """The job's processes (the training's world size): nodes x processes per node."""
        return self.nodes * self.processes_per_node

    def shape(self) -> tuple:
        """The resource shape: runs with equal shapes can share one job array."""
        return tuple(getattr(self, k) for k in RESOURCE_KEYS)


@dataclasses.dataclass(frozen=True)
class BranchesSpec:
    """Decay branches of every (WSD) run: `branches: {at: [0.125, 0.25, 0.5], cooldown: 0.2}`.

    at: fractions of the parent's length where a branch leaves the constant phase; None =
        `points` log-spaced ones, halvings of the constant phase (with the default 20%
        cool-down and 3 points: 0.4, 0.2, 0.1). cooldown: each branch cools down over this
        fraction of its own length. Branch `<run_id>-b<at>` is its own run directory.
    """

    at: tuple[float, ...] | None = None
    cooldown: float = 0.2  # fraction of each branch's length spent cooling down
    points: int = 3  # branches per parent when `at` is None

    def __post_init__(self):
        if not 0 < self.cooldown < 1:
            raise InvalidValue(
                "cooldown",
                f"must be in (0, 1) (a fraction of the branch's own length), got {self.cooldown}",
            )
        _positive(self, "points")
        for f in self.at or ():
            if not 0 < f < 1:
                raise InvalidValue(
                    "at", f"branch points are fractions of the parent's length in (0, 1), got {f}"
                )
        if self.at is not None and len(set(self.at)) != len(self.at):
            raise InvalidValue("at", f"repeated branch point in {list(self.at)}")

    def fractions(self, parent_cooldown_frac: float) -> tuple[float, ...]:
        """The branch points for a parent that cools down over `parent_cooldown_frac`."""
        if self.at is not None:
            return tuple(sorted(self.at))
        stable = 1 - parent_cooldown_frac
        return tuple(sorted(round(stable / 2**i, 6) for i in range(1, self.points + 1)))


@dataclasses.dataclass(frozen=True)
class SweepSpec:
    """The sweep file as written (scaling.study.sweep.sweep's docstring); `load_sweep` expands it.
    (Its `description:` is a note for the reader: accepted by the loader, not kept.)"""

    name: str  # the sweep's name (a plain name)
    output: Path  # output folder; run <id> lives in <output>/<id>/
    grid: dict[str, tuple[Any, ...]]  # the axes, crossed: depth (required) and any run-config key
    data: DataSpec = DataSpec()
    prepare: PrepareSpec = PrepareSpec()
    # run-config keys shared by every run
    base: dict[str, Any] = dataclasses.field(default_factory=dict)
    # short names of axes in run ids (defaults: d depth, s seed, lr base_lr, ...)
    labels: dict[str, str] = dataclasses.field(default_factory=dict)
    rules: tuple[RuleSpec, ...] = ()  # run-config keys set for a range of depths, in file order
    # depth -> run-config keys for that depth (after rules)
    overrides: dict[Any, dict[str, Any]] = dataclasses.field(default_factory=dict)
    # run-config eval keys shared by every run (before rules)
    eval: dict[str, Any] = dataclasses.field(default_factory=dict)
    cluster: ClusterSpec = ClusterSpec()  # where and how jobs run (SLURM or local)
    fit: dict[str, Any] = dataclasses.field(default_factory=dict)  # analysis.settings.FitSettings
    branches: BranchesSpec | None = None  # WSD decay branches from each parent run
    # tokenizer variants, crossed with the grid as the axis `tokenizer`: name -> overrides of
    # prepare.vqvae ({vocab_size: 128}), or {checkpoint: PATH} (an existing VQVAE); each gets
    # its own VQVAE and token store under <output>/_data/<name>/ (docs/studies.md)
    tokenizers: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        _check_name("name", self.name, "sweep name")
        if "depth" not in self.grid:
            raise InvalidValue("grid", "needs a 'depth' axis (list of depths)")
        for axis, values in self.grid.items():
            if not values:
                raise InvalidValue("grid", f"axis {axis!r} has no values")
        for axis, label in self.labels.items():
            if axis not in self.grid:
                raise InvalidValue("labels", f"{axis!r} is not a grid axis")
            if not re.match(r"^[A-Za-z][A-Za-z0-9_]*$", label):
                raise InvalidValue(
                    "labels", f"label {label!r} for {axis!r} must be letters, digits and '_'"
                )
