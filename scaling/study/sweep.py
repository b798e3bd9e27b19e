"""Sweep files: one YAML file describes a whole scaling study; this module validates it and
expands its grid into runs.

A sweep names an output folder, the data (an existing token store, or images and a VQVAE to
prepare first), a `base` run config, the grid axes (depth, and any run-config key, crossed),
rules that derive values from the depth (batch, learning rate, epochs, nodes and GPUs ...),
per-depth overrides, the evaluation schedule, the cluster settings and the fit defaults.
See sweeps/depth_grid.yaml for a commented example.

Loading validates everything once (`load_sweep`): every run's resolved config is built, so an
unknown key, a wrong type or an impossible value anywhere is a `ConfigError` that names the
sweep file, the line and the key path *in the sweep* where the offending value was written
(e.g. ``sweeps/x.yaml:31: overrides.16.optim.wpe: ...``), even when the value only became
wrong after merging.

Run ids are deterministic from the axis values: ``d16`` for the depth, then ``-<label><value>``
for every other grid axis in file order (``d12-lr3e-4-s1``). They are checked to be plain
names, so a run directory `<output>/<run_id>` can never leave the output folder.

Precedence when building a run's config (later wins): `base` < `eval` < `rules` (in file
order) < `overrides[depth]` < the grid axis values < command-line sets (``launch SWEEP.yaml
--set optim.base_lr=3e-3``: `load_sweep(path, sets=...)`). A set is checked like a value in
the file (an error names the ``--set`` and the key); a set that changes a run's resolved
config adds ``-<label><value>`` to its id (``d6-lr0.003``), so it never lands in the
directory of a run made without it; a set that changes nothing keeps the id.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import re
from pathlib import Path
from typing import Any, Literal

from scaling.core.config_io import (ConfigError, InvalidValue, KeyPath, Located, build, format_path,
                               load_yaml, parse_yaml)

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,79}$")
# where the sweep's special axes live in a run config
AXIS_KEYS = {"depth": "model.depth", "seed": "seed"}
DEFAULT_LABELS = {"depth": "d", "seed": "s", "base_lr": "lr", "batch_size": "b", "epochs": "ep",
                  "steps": "st", "images": "im", "tokens": "tok", "flops": "c"}
# cluster keys that rules and overrides may set per run (the resource shape of a job)
RESOURCE_KEYS = ("nodes", "gpus_per_node", "cpus_per_task", "mem_gb", "time_min", "partition",
                 "qos", "constraint", "account")
DATA_DIR = "_data"  # prepared data (images, VQVAE, token store) under the output folder


def _check_name(field: str, value: str, what: str) -> None:
    if not NAME_RE.match(value) or ".." in value:
        raise InvalidValue(field, f"{what} {value!r} must be a plain name: letters, digits, "
                                  "'.', '_', '-' (no '/', no '..'), at most 80 characters")


def _positive(obj: Any, *fields: str, allow_zero: bool = False) -> None:
    for f in fields:
        v = getattr(obj, f)
        if v is not None and (v < 0 or (v == 0 and not allow_zero)):
            raise InvalidValue(f, f"must be {'>= 0' if allow_zero else '> 0'}, got {v}")


# ----------------------------------------------------------------------------- schema

@dataclasses.dataclass(frozen=True)
class StoreHint:
    """What the token store will hold, for estimates before it exists (ImageNet-1k 256px)."""

    train_images: int = 1_281_167
    val_images: int = 50_000  # the evaluation split (ImageNet-1k val); feeds evaluation FLOPs
    num_classes: int = 1000
    vocab_size: int = 4096
    patch_nums: tuple[int, ...] = (1, 2, 3, 4, 5, 6, 8, 10, 13, 16)
    views: int = 1  # augmented views per train image the store will hold (tokenize --views)
    flip: bool = False  # whether it will hold mirrors too (tokenize --flip)
    z_channels: int = 32  # the VQVAE's code width (VAR's word_embed input)

    def __post_init__(self):
        _positive(self, "train_images", "val_images", "num_classes", "vocab_size", "views",
                  "z_channels")
        if not self.patch_nums or min(self.patch_nums) < 1:
            raise InvalidValue("patch_nums", "must be positive scale sizes")

    def meta(self) -> dict[str, Any]:
        """A stand-in for the store's meta.json (the keys `scaling.training.config.estimate` reads)."""
        rows = self.train_images * self.views * (2 if self.flip else 1)
        return {"num_classes": self.num_classes, "vocab_size": self.vocab_size,
                "patch_nums": list(self.patch_nums), "vqvae_config": {"z_channels": self.z_channels},
                "splits": {"train": {"count": rows, "images": self.train_images,
                                     "views": self.views, "flip": self.flip},
                           "val": {"count": self.val_images}}}


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

    tokens: Path | None = None
    images: Path | None = None
    vqvae: Path | None = None
    expect: StoreHint | None = None

    def __post_init__(self):
        if self.tokens is not None and (self.images is not None or self.vqvae is not None):
            raise InvalidValue("tokens", "give either a token store (tokens) or images/vqvae "
                                         "to tokenise, not both")


@dataclasses.dataclass(frozen=True)
class SyntheticSpec:
    """Generate the synthetic class-conditional image set (scaling.data.synthetic.generate)."""

    num_classes: int = 10
    train_per_class: int = 100
    val_per_class: int = 20
    resolution: int = 64
    seed: int = 0

    def __post_init__(self):
        _positive(self, "num_classes", "train_per_class", "val_per_class", "resolution")


@dataclasses.dataclass(frozen=True)
class TokenizeSpec:
    """Tokenise the images with the VQVAE into the token store (scaling.tokenize)."""

    shards: int = 1
    batch_size: int = 64
    views: int = 1  # views per train image (1 = one centre crop; K = K random crops)
    flip: bool = False  # also store each view's mirror (not the official recipe)
    view_seed: int = 0

    def __post_init__(self):
        _positive(self, "shards", "batch_size", "views")


@dataclasses.dataclass(frozen=True)
class PrepareResources:
    """Resources of the preparation jobs (VQVAE training, tokenisation shards)."""

    gpus_per_node: int = 0
    cpus_per_task: int = 1
    mem_gb: float | None = None
    time_min: int = 60

    def __post_init__(self):
        _positive(self, "cpus_per_task", "mem_gb", "time_min")
        _positive(self, "gpus_per_node", allow_zero=True)


@dataclasses.dataclass(frozen=True)
class ClassifierSpec:
    """Train the small classifier of the demo's sample metrics (scaling.classifier) on the
    sweep's images; it goes to `<output>/_data/classifier/classifier.pt`."""

    epochs: int = 2
    batch_size: int = 128
    lr: float = 2e-3
    width: int = 32
    feature_dim: int = 64
    seed: int = 0

    def __post_init__(self):
        _positive(self, "epochs", "batch_size", "lr", "width", "feature_dim")


@dataclasses.dataclass(frozen=True)
class PrepareSpec:
    """Preparation stages, run as jobs that the training jobs depend on.

    `vqvae` holds the options of scaling.train_vqvae (checked by that module's config when
    the sweep is loaded); its checkpoint goes to `<output>/_data/vqvae/vqvae.pt`, synthetic images
    to `<output>/_data/images`, the token store to `<output>/_data/tokens`.
    """

    synthetic: SyntheticSpec | None = None
    vqvae: dict[str, Any] | None = None
    tokenize: TokenizeSpec = TokenizeSpec()
    classifier: ClassifierSpec | None = None
    resources: PrepareResources = PrepareResources()


@dataclasses.dataclass(frozen=True)
class RuleSpec:
    """Values derived from the size: `set` applies to runs whose depth matches.

    A run matches when its depth is in `depths` (if given) and within [min_depth, max_depth]
    (bounds that are given). `set` maps run-config keys (dotted or nested) or `cluster.<key>`
    resource keys to values. `why` documents the rule (e.g. "official d30 recipe").
    """

    set: dict[str, Any]
    depths: tuple[int, ...] | None = None
    min_depth: int | None = None
    max_depth: int | None = None
    why: str = ""

    def __post_init__(self):
        if self.depths is None and self.min_depth is None and self.max_depth is None:
            raise InvalidValue("set", "a rule needs depths, min_depth or max_depth")
        if self.min_depth is not None and self.max_depth is not None and self.min_depth > self.max_depth:
            raise InvalidValue("min_depth", f"{self.min_depth} > max_depth {self.max_depth}")

    def matches(self, depth: int) -> bool:
        """Whether this rule applies to a run of this depth."""
        return ((self.depths is None or depth in self.depths)
                and (self.min_depth is None or depth >= self.min_depth)
                and (self.max_depth is None or depth <= self.max_depth))


@dataclasses.dataclass(frozen=True)
class ClusterSpec:
    """How and where jobs run. Resource keys (see RESOURCE_KEYS) can be set per depth by
    rules and overrides (`cluster.nodes: 4`); the others hold for the whole sweep.

    backend: auto (SLURM when `sbatch` is found, else local), slurm, local (submitit's local
    executor: subprocesses on this machine), debug (in this process, one run after another).
    One task per GPU; `cpus_per_task` CPUs each. `time_min` is the SLURM time limit: longer
    runs are requeued from their checkpoint (at most `max_requeues` times).
    `assumed_tflops_per_gpu` only feeds the GPU-hours estimate of the launch table.
    """

    backend: Literal["auto", "slurm", "local", "debug"] = "auto"
    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    constraint: str | None = None
    nodes: int = 1
    gpus_per_node: int = 0
    cpus_per_task: int = 1
    mem_gb: float | None = None
    time_min: int = 60
    array_parallelism: int = 64
    max_requeues: int = 20
    signal_delay_s: int = 120
    setup: tuple[str, ...] = ()
    sbatch: dict[str, str] = dataclasses.field(default_factory=dict)
    assumed_tflops_per_gpu: float = 300.0

    def __post_init__(self):
        _positive(self, "nodes", "cpus_per_task", "mem_gb", "time_min", "array_parallelism",
                  "assumed_tflops_per_gpu")
        _positive(self, "gpus_per_node", "max_requeues", "signal_delay_s", allow_zero=True)
        if self.signal_delay_s >= 60 * self.time_min:
            raise InvalidValue("signal_delay_s", f"{self.signal_delay_s} s is not less than the "
                                                 f"time limit ({self.time_min} min): the job would "
                                                 "be signalled before it starts")
        if self.nodes > 1 and self.gpus_per_node == 0:
            raise InvalidValue("nodes", f"{self.nodes} nodes without GPUs: multi-node runs "
                                        "need gpus_per_node >= 1")
        for k in self.sbatch:
            if not re.match(r"^[a-z][a-z0-9_-]*$", k):
                raise InvalidValue("sbatch", f"bad sbatch option name {k!r} "
                                             "(write it without '--', e.g. 'mail-type')")

    @property
    def tasks_per_node(self) -> int:
        """One process per GPU (one when running on CPUs)."""
        return max(1, self.gpus_per_node)

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
    cooldown: float = 0.2
    points: int = 3

    def __post_init__(self):
        if not 0 < self.cooldown < 1:
            raise InvalidValue("cooldown", f"must be in (0, 1) (a fraction of the branch's own "
                                           f"length), got {self.cooldown}")
        _positive(self, "points")
        for f in self.at or ():
            if not 0 < f < 1:
                raise InvalidValue("at", f"branch points are fractions of the parent's length "
                                         f"in (0, 1), got {f}")
        if self.at is not None and len(set(self.at)) != len(self.at):
            raise InvalidValue("at", f"repeated branch point in {list(self.at)}")

    def fractions(self, parent_cooldown_frac: float) -> tuple[float, ...]:
        """The branch points for a parent that cools down over `parent_cooldown_frac`."""
        if self.at is not None:
            return tuple(sorted(self.at))
        stable = 1 - parent_cooldown_frac
        return tuple(sorted(round(stable / 2 ** i, 6) for i in range(1, self.points + 1)))


@dataclasses.dataclass(frozen=True)
class SweepSpec:
    """The sweep file as written (see the module docstring); `load_sweep` expands it."""

    name: str
    output: Path
    grid: dict[str, tuple[Any, ...]]
    description: str = ""
    data: DataSpec = DataSpec()
    prepare: PrepareSpec = PrepareSpec()
    base: dict[str, Any] = dataclasses.field(default_factory=dict)
    labels: dict[str, str] = dataclasses.field(default_factory=dict)
    rules: tuple[RuleSpec, ...] = ()
    overrides: dict[Any, dict[str, Any]] = dataclasses.field(default_factory=dict)
    eval: dict[str, Any] = dataclasses.field(default_factory=dict)
    cluster: ClusterSpec = ClusterSpec()
    fit: dict[str, Any] = dataclasses.field(default_factory=dict)  # scaling.study.fit.FitSettings keys
    branches: BranchesSpec | None = None

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
                raise InvalidValue("labels", f"label {label!r} for {axis!r} must be letters, "
                                             "digits and '_'")


# ----------------------------------------------------------------------------- runs

@dataclasses.dataclass(frozen=True)
class Run:
    """One grid point: its id, axis values, resolved run config (and as plain data),
    resources and run directory."""

    run_id: str
    depth: int
    axes: dict[str, Any]
    config: Any               # scaling.training.config.RunConfig when available, else the plain dict
    data: dict[str, Any]      # the resolved run config as plain nested data
    resources: ClusterSpec
    run_dir: Path
    parent: str | None = None  # decay branches: the parent run's id
    # command-line sets that changed this run: key -> (resolved value, the --set as typed)
    sets: dict[str, tuple[Any, str]] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class Sweep:
    """A loaded, validated and expanded sweep."""

    spec: SweepSpec
    source: str
    runs: tuple[Run, ...]

    @property
    def output(self) -> Path:
        return self.spec.output

    @property
    def data_dir(self) -> Path:
        """Where prepared data (images, VQVAE, token store) goes."""
        return self.spec.output / DATA_DIR

    def token_store(self) -> Path:
        """The token store the runs train on (existing, or the one prepared under data_dir)."""
        return self.spec.data.tokens if self.spec.data.tokens is not None else self.data_dir / "tokens"

    def stages(self) -> list[str]:
        """Preparation stages this sweep needs, in order: 'synthetic', 'vqvae', 'tokenize',
        'classifier' (with prepare.classifier)."""
        d = self.spec.data
        extra = ["classifier"] if self.spec.prepare.classifier is not None else []
        if d.tokens is not None:
            return extra
        out = []
        if d.images is None:
            out.append("synthetic")
        if d.vqvae is None:
            out.append("vqvae")
        return out + ["tokenize"] + extra

    def classifier_path(self) -> Path:
        """The demo classifier trained by the `classifier` stage."""
        return self.data_dir / "classifier" / "classifier.pt"

    def images_dir(self) -> Path:
        """The images to tokenise (given, or generated under data_dir)."""
        return self.spec.data.images if self.spec.data.images is not None else self.data_dir / "images"

    def vqvae_path(self) -> Path:
        """The VQVAE checkpoint used for tokenising (given, or trained under data_dir)."""
        if self.spec.data.vqvae is not None:
            return self.spec.data.vqvae
        return self.data_dir / "vqvae" / "vqvae.pt"

    def expected_meta(self) -> dict[str, Any]:
        """Stand-in for the token store's meta.json, for estimates before the store exists."""
        if self.spec.data.expect is not None:
            return self.spec.data.expect.meta()
        hint = StoreHint()
        syn, vq = self.spec.prepare.synthetic, self.spec.prepare.vqvae
        tok = self.spec.prepare.tokenize
        hint = dataclasses.replace(hint, views=tok.views, flip=tok.flip)
        if syn is not None:
            hint = dataclasses.replace(hint, num_classes=syn.num_classes,
                                       train_images=syn.num_classes * syn.train_per_class,
                                       val_images=syn.num_classes * syn.val_per_class)
        if vq is not None:
            defaults: dict[str, Any] = {}
            try:
                from scaling.data.vqvae_training import VQVAETrainConfig

                defaults = {f.name: f.default for f in dataclasses.fields(VQVAETrainConfig)}
            except ImportError:
                pass
            options = {**defaults, **vq}
            hint = dataclasses.replace(
                hint, vocab_size=int(options.get("vocab_size", hint.vocab_size)),
                patch_nums=tuple(options.get("patch_nums", hint.patch_nums)),
                z_channels=int(options.get("z_channels", hint.z_channels)))
        return hint.meta()

    def select(self, only: str | None = None, exclude: str | None = None) -> list[Run]:
        """Runs filtered by comma-separated glob patterns on run ids (``--only 'd1*,d20'``)."""
        import fnmatch

        def hit(run_id: str, patterns: str) -> bool:
            return any(fnmatch.fnmatchcase(run_id, p.strip()) for p in patterns.split(",") if p.strip())

        return [r for r in self.runs
                if (only is None or hit(r.run_id, only)) and not (exclude and hit(r.run_id, exclude))]


# ----------------------------------------------------------------------------- helpers

def format_value(value: Any) -> str:
    """A grid value as it appears in a run id: 3e-4 -> '3e-4', 0.5 -> '0.5', 200 -> '200'."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if value == 0 or 1e-3 <= abs(value) < 1e5:
            text = repr(value)
            return text[:-2] if text.endswith(".0") else text
        mantissa, exp = f"{value:.6e}".split("e")
        mantissa = mantissa.rstrip("0").rstrip(".")
        return f"{mantissa}e{int(exp)}"
    return str(value)


def _label(axis: str, labels: dict[str, str]) -> str:
    if axis in labels:
        return labels[axis]
    last = axis.split(".")[-1]
    return DEFAULT_LABELS.get(last, re.sub(r"[^A-Za-z0-9]", "", last))


def _flatten(data: Any, prefix: KeyPath, out: dict[KeyPath, Any]) -> None:
    """Nested mappings with dotted keys -> {key path: leaf value}."""
    for key, value in data.items():
        path = prefix + tuple(str(key).split("."))
        if isinstance(value, dict) and value:
            _flatten(value, path, out)
        else:
            out[path] = value


def _unflatten(flat: dict[KeyPath, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for path, value in flat.items():
        node = out
        for part in path[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ValueError(f"{'.'.join(path)}: a parent key holds a value, not a mapping")
        node[path[-1]] = value
    return out


def _sweep_paths(data: Any, prefix: KeyPath) -> dict[KeyPath, KeyPath]:
    """Like _flatten, but maps each flattened path to where it was written in the sweep."""
    out: dict[KeyPath, KeyPath] = {}

    def walk(d: dict, run_prefix: KeyPath, sweep_prefix: KeyPath) -> None:
        for key, value in d.items():
            rp = run_prefix + tuple(str(key).split("."))
            sp = sweep_prefix + (str(key),)
            if isinstance(value, dict) and value:
                walk(value, rp, sp)
            else:
                out[rp] = sp

    walk(data, (), prefix)
    return out


class _SweepLocated(Located):
    """Locates errors raised while building one run's config back in the sweep file.

    `origin` maps a path in the run's data to the sweep key path that set it; a path with no
    origin (e.g. a required key nobody set) is reported under `base`.
    """

    def __init__(self, source: str, lines: dict, origin: dict[KeyPath, KeyPath], run_id: str):
        super().__init__(source, lines)
        self.origin = origin
        self.run_id = run_id

    def error(self, path: KeyPath, message: str) -> ConfigError:
        path = tuple(path)
        for cut in range(len(path), 0, -1):
            if path[:cut] in self.origin:
                sweep_path = self.origin[path[:cut]] + path[cut:]
                break
        else:
            sweep_path = (("cluster",) + path[1:]) if path[:1] == ("cluster",) else ("base",) + path
        if sweep_path[:1] == ("--set",):  # a command-line set: name it, not a line of the file
            return ConfigError(f"--set {sweep_path[1]!r}: {format_path(path)}: {message} "
                               f"(run {self.run_id})")
        return ConfigError(f"{self.where(sweep_path)}: {format_path(sweep_path)}: {message} "
                           f"(run {self.run_id})")


def _lines_as_str(loc: Located) -> dict:
    """Located keys with mapping keys as strings (YAML keys like 16 are stored as '16')."""
    return {tuple(p if isinstance(p, int) else str(p) for p in k): v for k, v in loc.lines.items()}


def build_run_config(data: dict, loc: Located) -> Any:
    """Build the typed run config from plain data (scaling.training.config.RunConfig when available)."""
    try:
        from scaling.training.config import RunConfig
    except ImportError:  # trainer config not merged yet: keep the plain data
        return data
    return build(RunConfig, data, loc)


# ----------------------------------------------------------------------------- loading

def load_sweep(path: str | Path, sets: tuple[str, ...] | list[str] = ()) -> Sweep:
    """Read, validate and expand a sweep file; raise ConfigError (file:line: key: message).

    `sets`: ``KEY=VALUE`` texts (``--set`` on the command line) applied over every run (see
    the module docstring)."""
    data, loc = load_yaml(path)
    return sweep_from_data(data, loc, sets)


def parse_sweep(text: str, source: str = "<string>", sets: tuple[str, ...] | list[str] = ()) -> Sweep:
    """`load_sweep` on YAML text."""
    data, loc = parse_yaml(text, source)
    return sweep_from_data(data, loc, sets)


@dataclasses.dataclass(frozen=True)
class SetValue:
    """One ``--set KEY=VALUE``: the run-config key path, its value (YAML), the text typed."""

    key: KeyPath
    value: Any
    text: str


def parse_sets(sets: tuple[str, ...] | list[str]) -> list[SetValue]:
    """``["optim.base_lr=3e-3", ...]`` -> SetValues; a malformed one is a ConfigError naming it.

    The value is read as YAML (``3``, ``true``, ``[1, 2]``, ``null``); a number written
    without a dot (``3e-3``) is a number.
    """
    import yaml

    out = []
    for text in sets:
        key, eq, raw = text.partition("=")
        key = key.strip()
        if not eq or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*", key):
            raise ConfigError(f"--set {text!r}: expected KEY=VALUE with a dotted run-config key, "
                              "e.g. --set optim.base_lr=3e-3")
        try:
            value = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError as e:
            raise ConfigError(f"--set {text!r}: the value is not valid YAML ({e})") from None
        if isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                pass
        out.append(SetValue(tuple(key.split(".")), value, text))
    return out


def sweep_from_data(data: Any, loc: Located, sets: tuple[str, ...] | list[str] = ()) -> Sweep:
    """Validate plain sweep data (with its line locations) and expand the grid into runs."""
    if isinstance(data, dict) and isinstance(data.get("overrides"), dict):
        # YAML reads `16:` as an int key; keep them as written (strings) for paths and lines
        data = dict(data, overrides={str(k): v for k, v in data["overrides"].items()})
    spec: SweepSpec = build(SweepSpec, data, loc)
    lines = _lines_as_str(loc)
    _check_static(spec, loc)
    runs = _expand(spec, loc.source, lines, parse_sets(sets))
    if spec.branches is not None:
        runs = _with_branches(runs, spec.branches, Located(loc.source, lines))
    return Sweep(spec=spec, source=loc.source, runs=tuple(runs))


def _check_static(spec: SweepSpec, loc: Located) -> None:
    """Checks across sections that a single dataclass cannot make."""
    for i, depth in enumerate(spec.grid["depth"]):
        if isinstance(depth, bool) or not isinstance(depth, int) or depth < 1:
            raise loc.error(("grid", "depth", i), f"a depth must be a positive integer, got {depth!r}")
    depths = set(spec.grid["depth"])
    seen: dict[int, str] = {}
    for key in spec.overrides:
        m = re.fullmatch(r"d?([1-9]\d*)", key)
        if not m:
            raise loc.error(("overrides", key), "override keys are depths written 16 or d16 "
                                                "(no leading zeros, nothing else)")
        if int(m.group(1)) in seen:
            raise loc.error(("overrides", key), f"depth {int(m.group(1))} already has overrides "
                                                f"under key {seen[int(m.group(1))]!r}: merge them "
                                                "into one")
        seen[int(m.group(1))] = key
        if int(m.group(1)) not in depths:
            raise loc.error(("overrides", key), f"depth {int(m.group(1))} is not in grid.depth "
                                                f"{sorted(depths)}")
        if not isinstance(spec.overrides[key], dict):
            raise loc.error(("overrides", key), "expected a mapping of config keys to values")
    for axis, values in spec.grid.items():
        if len(set(map(repr, values))) != len(values):
            raise loc.error(("grid", axis), "repeated value")
    labels = [_label(a, spec.labels) for a in spec.grid]
    for axis in spec.grid:
        if labels.count(_label(axis, spec.labels)) > 1:
            raise loc.error(("grid", axis), f"two axes share the run-id label "
                                            f"{_label(axis, spec.labels)!r}: set labels")
    if spec.data.tokens is None and spec.data.images is None and spec.prepare.synthetic is None:
        raise loc.error(("data",), "no data: give data.tokens (a token store), data.images "
                                   "(an image folder) or prepare.synthetic")
    if spec.data.images is not None and spec.prepare.synthetic is not None:
        raise loc.error(("prepare", "synthetic"), "data.images is given: nothing to generate")
    if spec.data.vqvae is not None and spec.prepare.vqvae is not None:
        raise loc.error(("prepare", "vqvae"), "data.vqvae is given: nothing to train")
    if spec.data.tokens is None and spec.data.vqvae is None and spec.prepare.vqvae is None:
        raise loc.error(("data",), "images need a VQVAE: give data.vqvae or prepare.vqvae")
    if spec.prepare.vqvae is not None:
        _check_vqvae_options(spec.prepare.vqvae, loc)
    if spec.prepare.classifier is not None and spec.data.images is None and spec.prepare.synthetic is None:
        raise loc.error(("prepare", "classifier"), "needs images: give data.images or prepare.synthetic")
    from scaling.study.fit import FitSettings  # torch-free; the fitting CLI's own settings

    build(FitSettings, spec.fit, loc, ("fit",))


def _check_vqvae_options(options: dict, loc: Located) -> None:
    """Check prepare.vqvae against scaling.train_vqvae's config (images/out are the sweep's)."""
    for key in ("images", "out"):
        if key in options:
            raise loc.error(("prepare", "vqvae", key), "set by the sweep (data.images or "
                            f"<output>/{DATA_DIR}/...): leave it out")
    try:
        from scaling.data.vqvae_training import VQVAETrainConfig
    except ImportError:  # stage-1 trainer not installed: checked when the stage runs
        return
    build(VQVAETrainConfig, dict(options, images="images", out="out"), loc, ("prepare", "vqvae"))


def _run_id(point: dict[str, Any], spec: SweepSpec, loc: Located) -> str:
    """`d<depth>` then `-<label><value>` per other axis; each piece must be a plain name."""
    parts = []
    for axis, value in point.items():
        piece = f"{_label(axis, spec.labels)}{format_value(value)}"
        if not re.fullmatch(r"[A-Za-z0-9._-]+", piece) or ".." in piece:
            index = list(spec.grid[axis]).index(value)
            raise loc.error(("grid", axis, index), f"value {value!r} would make the run-id part "
                            f"{piece!r}: run ids must be plain names (letters, digits, '.', '_', '-'), "
                            "so that run directories stay inside the output folder")
        parts.append(piece)
    run_id = "-".join(parts)
    if not NAME_RE.match(run_id):
        raise loc.error(("grid",), f"run id {run_id!r} is too long or not a plain name")
    return run_id


def _expand(spec: SweepSpec, source: str, lines: dict, sets: list[SetValue] = ()) -> list[Run]:
    axes = ["depth"] + [a for a in spec.grid if a != "depth"]
    loc = Located(source, lines)
    points: dict[str, dict] = {}
    for values in itertools.product(*(spec.grid[a] for a in axes)):
        point = dict(zip(axes, values))
        run_id = _run_id(point, spec, loc)
        if run_id in points:
            raise loc.error(("grid",), f"runs {points[run_id]} and {point} get the same id "
                                       f"{run_id!r}")
        points[run_id] = point
    axis_keys = {tuple(AXIS_KEYS.get(a, a).split(".")): a for a in spec.grid}
    for s in sets:
        if s.key in axis_keys:
            raise ConfigError(f"--set {s.text!r}: {'.'.join(s.key)} is the grid axis "
                              f"{axis_keys[s.key]!r} of {source}; change grid.{axis_keys[s.key]} "
                              "there (or --only to pick some of its values)")
        if s.key[0] == "cluster" and (len(s.key) != 2 or s.key[1] not in RESOURCE_KEYS):
            raise ConfigError(f"--set {s.text!r}: only cluster.{{{', '.join(RESOURCE_KEYS)}}} "
                              "may be set per run; set other cluster keys in the sweep file")
        if s.key == ("run_id",):
            raise ConfigError(f"--set {s.text!r}: run ids come from the grid")
    runs = []
    for run_id, point in points.items():
        run = _resolve(spec, point, run_id, source, lines)
        if sets:
            run = _apply_sets(spec, point, run, source, lines, sets)
        runs.append(run)
    ids = [r.run_id for r in runs]
    if len(set(ids)) != len(ids):
        raise ConfigError(f"--set {', '.join(s.text for s in sets)}: two runs would get the same id")
    return runs


def _leaf(data: Any, key: KeyPath) -> Any:
    for part in key:
        if not isinstance(data, dict) or part not in data:
            return None
        data = data[part]
    return data


def _apply_sets(spec: SweepSpec, point: dict[str, Any], plain: Run, source: str, lines: dict,
                sets: list[SetValue]) -> Run:
    """The run with the command-line sets applied; a new id when they change its config."""
    run = _resolve(spec, point, plain.run_id, source, lines, sets)
    resolved = {**run.data, "cluster": dataclasses.asdict(run.resources)}
    before = {**plain.data, "cluster": dataclasses.asdict(plain.resources)}
    changed = {".".join(s.key): (_leaf(resolved, s.key), s.text) for s in sets
               if _leaf(resolved, s.key) != _leaf(before, s.key)}
    if not changed:
        return run
    suffix = "-".join(f"{_label(k, spec.labels)}{format_value(v)}" for k, (v, _) in changed.items())
    run_id = f"{plain.run_id}-{re.sub(r'[^A-Za-z0-9._-]', '_', suffix)}"
    if not NAME_RE.match(run_id):
        raise ConfigError(f"--set {', '.join(t for _, t in changed.values())}: run id {run_id!r} "
                          "would be too long or not a plain name")
    run = _resolve(spec, point, run_id, source, lines, sets)
    return dataclasses.replace(run, sets=changed)


def _resolve(spec: SweepSpec, point: dict[str, Any], run_id: str, source: str,
             lines: dict, sets: list[SetValue] = ()) -> Run:
    """Merge base < eval < rules < overrides < axes into one run config and its resources."""
    flat: dict[KeyPath, Any] = {}
    origin: dict[KeyPath, KeyPath] = {}

    def put(values: dict, sweep_prefix: KeyPath, run_prefix: KeyPath = ()) -> None:
        f: dict[KeyPath, Any] = {}
        _flatten(values, run_prefix, f)
        o = _sweep_paths(values, sweep_prefix)
        for k, v in f.items():
            flat[k] = v
            origin[k] = o[k[len(run_prefix):]]

    put(spec.base, ("base",))
    put(spec.eval, ("eval",), ("eval",))
    depth = point["depth"]
    for i, rule in enumerate(spec.rules):
        if rule.matches(depth):
            put(rule.set, ("rules", i, "set"))
    key = next((k for k in spec.overrides if int(k.lstrip("d")) == depth), None)
    if key is not None:
        put(spec.overrides[key], ("overrides", key))
    for axis, value in point.items():
        run_key = tuple(AXIS_KEYS.get(axis, axis).split("."))
        flat[run_key] = value
        origin[run_key] = ("grid", axis, list(spec.grid[axis]).index(value))
    for s in sets:  # the command line wins over everything in the file
        for k in [k for k in flat if k[:len(s.key)] == s.key or s.key[:len(k)] == k]:
            del flat[k]  # a set replaces the subtree (or the value) it names
        flat[s.key] = s.value
        origin[s.key] = ("--set", s.text)
    # the data the run trains on, and its name
    store_key = ("data", "store")
    if store_key not in flat:
        # absolute: a run's config.yaml must mean the same store from any working directory
        flat[store_key] = str(Path(spec.data.tokens if spec.data.tokens is not None
                                   else spec.output / DATA_DIR / "tokens").absolute())
        origin[store_key] = ("data", "tokens")
    if spec.prepare.classifier is not None and flat.get(("samples", "features")) == "classifier":
        # the prepared classifier and the val images as the reference, unless set (absolute)
        for key, path, why in (("classifier", spec.output / DATA_DIR / "classifier" / "classifier.pt",
                                ("prepare", "classifier")),
                               ("reference", (spec.data.images if spec.data.images is not None
                                              else spec.output / DATA_DIR / "images") / "val", ("data",))):
            if ("samples", key) not in flat:
                flat[("samples", key)] = str(Path(path).absolute())
                origin[("samples", key)] = why
    flat[("run_id",)] = run_id
    origin[("run_id",)] = ("grid",)

    resource_flat = {k: v for k, v in flat.items() if k[0] == "cluster"}
    run_flat = {k: v for k, v in flat.items() if k[0] != "cluster"}
    located = _SweepLocated(source, lines, origin, run_id)
    for k in resource_flat:
        if len(k) != 2 or k[1] not in RESOURCE_KEYS:
            raise located.error(k, f"rules and overrides may set only cluster.{{{', '.join(RESOURCE_KEYS)}}}")
    try:
        run_data = _unflatten(run_flat)
    except ValueError as e:
        raise located.error(("base",), str(e)) from None
    config = build_run_config(run_data, located)
    cluster_data = {f.name: getattr(spec.cluster, f.name) for f in dataclasses.fields(ClusterSpec)}
    cluster_data.update({k[1]: v for k, v in resource_flat.items()})
    cluster_data["setup"] = list(cluster_data["setup"])
    resources = build(ClusterSpec, cluster_data, located, ("cluster",))
    if dataclasses.is_dataclass(config):
        from scaling.core.config_io import to_dict
        run_data = to_dict(config)
    return Run(run_id=run_id, depth=depth, axes=point, config=config, data=run_data,
               resources=resources, run_dir=spec.output / run_id)


def _with_branches(runs: list[Run], spec: BranchesSpec, loc: Located) -> list[Run]:
    """Each run keeps its stable-phase state at the branch points; each branch follows its
    parent in the list."""
    from scaling.training.config import BranchConfig

    out: list[Run] = []
    for run in runs:
        if not dataclasses.is_dataclass(run.config):
            raise loc.error(("branches",), "decay branches need scaling.config")
        optim = run.config.optim
        if optim.schedule != "wsd":
            raise loc.error(("branches",), f"run {run.run_id} has optim.schedule "
                            f"{optim.schedule!r}: decay branches need a WSD schedule "
                            "(set optim.schedule: wsd in base)")
        fractions = spec.fractions(optim.cooldown_frac)
        if optim.cooldown_steps is None:
            for i, f in enumerate(fractions):
                if f >= 1 - optim.cooldown_frac:
                    raise loc.error(("branches", "at", i) if spec.at else ("branches",),
                                    f"branch point {f} is not before run {run.run_id}'s cool-down "
                                    f"(which starts at {1 - optim.cooldown_frac:g} of its length)")
        parent_config = dataclasses.replace(run.config, save_at=fractions)
        from scaling.core.config_io import to_dict

        out.append(dataclasses.replace(run, config=parent_config, data=to_dict(parent_config)))
        for f in fractions:
            branch_id = f"{run.run_id}-b{format_value(f)}"
            config = dataclasses.replace(
                run.config, run_id=branch_id, save_at=(),
                branch=BranchConfig(parent=run.run_id, at=f, cooldown=spec.cooldown))
            out.append(Run(run_id=branch_id, depth=run.depth, axes=dict(run.axes, branch=f),
                           config=config, data=to_dict(config), resources=run.resources,
                           run_dir=run.run_dir.parent / branch_id, parent=run.run_id))
    ids = [r.run_id for r in out]
    dup = next((i for i in ids if ids.count(i) > 1), None)
    if dup:
        raise loc.error(("branches",), f"branch run id {dup!r} is also another run's id")
    return out


# ----------------------------------------------------------------------------- sizes

def gpu_hours(flops: float, resources: ClusterSpec) -> float:
    """Estimated GPU-hours for `flops` at the assumed sustained rate per GPU."""
    return flops / (resources.assumed_tflops_per_gpu * 1e12) / 3600.0


def human(n: float) -> str:
    """1234567 -> '1.23M' (K, M, G, T, P, E suffixes)."""
    for unit, scale in (("E", 1e18), ("P", 1e15), ("T", 1e12), ("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.3g}{unit}"
    return f"{n:.3g}" if not math.isclose(n, round(n)) else str(int(round(n)))


# ----------------------------------------------------------------------------- sources

SWEEP_COPY = "sweep.yaml"  # <output>/sweep.yaml: the sweep file as last launched


def sweep_file_for(source: str | Path) -> Path:
    """What `launch`, `status` and `fit` were given -> the sweep file.

    A file is the sweep itself; a folder is a sweep's output (runs folder), whose
    ``sweep.yaml`` the launcher copied there. Raises ConfigError saying what is missing.
    """
    source = Path(source)
    if source.is_dir():
        copy = source / SWEEP_COPY
        if not copy.is_file():
            raise ConfigError(f"{source}: a folder without {SWEEP_COPY}: not the output of "
                              "`python -m scaling.launch` (give the sweep file instead)")
        return copy
    if not source.exists():
        raise ConfigError(f"{source}: no such sweep file or runs folder")
    return source


def load_sweep_or_runs(source: str | Path, sets: tuple[str, ...] | list[str] = ()) -> Sweep:
    """`load_sweep` on a sweep file, or on the copy in a runs folder (`sweep_file_for`).

    A copy's relative paths mean what they meant at launch (relative to the working
    directory): a copy whose output is not this folder is an error that says so.
    """
    path = sweep_file_for(source)
    sweep = load_sweep(path, sets)
    if Path(source).is_dir() and sweep.output.resolve() != Path(source).resolve():
        raise ConfigError(f"{path}: its output is {sweep.output} ({sweep.output.resolve()}), "
                          f"not {Path(source).resolve()}: run from the directory it was launched "
                          "from, or give the sweep file")
    return sweep
