"""A sweep's grid -> its runs: ids, resolved run configs, resources, decay branches.

Run ids are deterministic from the axis values: ``d16`` for the depth, then ``-<label><value>``
for every other grid axis in file order (``d12-lr3e-4-s1``). They are checked to be plain
names, so a run directory `<output>/<run_id>` can never leave the output folder.

Precedence when building a run's config (later wins): `base` < `eval` < `rules` (in file
order) < `overrides[depth]` < the grid axis values < command-line sets (``launch SWEEP.yaml
--set optim.base_lr=3e-3``: `load_sweep(path, sets=...)`). A set is checked like a value in
the file (an error names the ``--set`` and the key); a set that changes a run's resolved
config adds ``-<label><value>`` to its id (``d6-lr0.003``), so it never lands in the
directory of a run made without it; a set that changes nothing keeps the id.

Every run's config is built here, so an unknown key, a wrong type or an impossible value is a
`ConfigError` that names the sweep file, the line and the key path *in the sweep* where the
offending value was written (``sweeps/x.yaml:31: overrides.16.optim.wpe: ...``), even when the
value only became wrong after merging.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from scaling.core.config_io import (
    ConfigError,
    KeyPath,
    Located,
    SetValue,
    build,
    format_path,
    parse_sets,
    to_dict,
)
from scaling.study.sweep.spec import (
    AXIS_KEYS,
    DATA_DIR,
    DEFAULT_LABELS,
    NAME_RE,
    RESOURCE_KEYS,
    TOKENIZER_AXIS,
    BranchesSpec,
    ClusterSpec,
    SweepSpec,
    prepared_dir,
)
from scaling.training.config import BranchConfig, RunConfig


@dataclasses.dataclass(frozen=True)
class Run:
    """One grid point: its id, axis values as written in the grid (a decay branch adds
    `branch`), resolved run config, resources and run directory."""

    run_id: str
    depth: int
    axes: dict[str, Any]
    config: RunConfig
    resources: ClusterSpec
    run_dir: Path
    parent: str | None = None  # decay branches: the parent run's id
    # command-line sets that changed this run: key -> (resolved value, the --set as typed)
    sets: dict[str, tuple[Any, str]] = dataclasses.field(default_factory=dict)


def expand(spec: SweepSpec, loc: Located, sets: tuple[str, ...] | list[str] = ()) -> list[Run]:
    """Every run of the grid, with the command-line `sets` (``KEY=VALUE`` texts) applied over
    each, then each run's decay branches (after their parent); errors are located in `loc`."""
    lines = _lines_as_str(loc)
    runs = _grid_runs(spec, loc.source, lines, parse_sets(sets))
    if spec.branches is not None:
        runs = _with_branches(runs, spec.branches, Located(loc.source, lines))
    return runs


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


def axis_label(axis: str, labels: dict[str, str]) -> str:
    """The run-id label of a grid axis (or set key): the sweep's `labels`, else a default
    ('d', 'lr', ...), else the key's last part without punctuation."""
    if axis in labels:
        return labels[axis]
    if axis == TOKENIZER_AXIS:  # the variant's name alone: d4-v128
        return ""
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
            node = node.setdefault(str(part), {})
            if not isinstance(node, dict):
                raise ValueError(
                    f"{'.'.join(map(str, path))}: a parent key holds a value, not a mapping"
                )
        node[str(path[-1])] = value
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
            return ConfigError(
                f"--set {sweep_path[1]!r}: {format_path(path)}: {message} (run {self.run_id})"
            )
        return ConfigError(
            f"{self.where(sweep_path)}: {format_path(sweep_path)}: {message} (run {self.run_id})"
        )


def _lines_as_str(loc: Located) -> dict:
    """Located keys with mapping keys as strings (YAML keys like 16 are stored as '16')."""
    return {tuple(p if isinstance(p, int) else str(p) for p in k): v for k, v in loc.lines.items()}


def _run_id(point: dict[str, Any], spec: SweepSpec, loc: Located) -> str:
    """`d<depth>` then `-<label><value>` per other axis; each piece must be a plain name."""
    parts = []
    for axis, value in point.items():
        if isinstance(value, float) and not math.isfinite(value):
            index = next(i for i, v in enumerate(spec.grid[axis]) if v is value)
            raise loc.error(("grid", axis, index), f"must be a finite number, got {value!r}")
        piece = f"{axis_label(axis, spec.labels)}{format_value(value)}"
        if not re.fullmatch(r"[A-Za-z0-9._-]+", piece) or ".." in piece:
            index = list(spec.grid[axis]).index(value)
            raise loc.error(
                ("grid", axis, index),
                f"value {value!r} would make the run-id part "
                f"{piece!r}: run ids must be plain names (letters, digits, '.', '_', '-'), "
                "so that run directories stay inside the output folder",
            )
        parts.append(piece)
    run_id = "-".join(parts)
    if not NAME_RE.match(run_id):
        raise loc.error(("grid",), f"run id {run_id!r} is too long or not a plain name")
    return run_id


def _grid_runs(spec: SweepSpec, source: str, lines: dict, sets: list[SetValue]) -> list[Run]:
    axes = ["depth"] + [a for a in spec.grid if a != "depth"]
    loc = Located(source, lines)
    points: dict[str, dict] = {}
    for values in itertools.product(*(spec.grid[a] for a in axes)):
        point = dict(zip(axes, values))
        run_id = _run_id(point, spec, loc)
        if run_id in points:
            raise loc.error(
                ("grid",), f"runs {points[run_id]} and {point} get the same id {run_id!r}"
            )
        points[run_id] = point
    axis_keys = {tuple(AXIS_KEYS.get(a, a).split(".")): a for a in spec.grid}
    for s in sets:
        if s.key in axis_keys:
            raise ConfigError(
                f"--set {s.text!r}: {'.'.join(s.key)} is the grid axis "
                f"{axis_keys[s.key]!r} of {source}; change grid.{axis_keys[s.key]} "
                "there (or --only to pick some of its values)"
            )
        if s.key[0] == "cluster" and (len(s.key) != 2 or s.key[1] not in RESOURCE_KEYS):
            raise ConfigError(
                f"--set {s.text!r}: only cluster.{{{', '.join(RESOURCE_KEYS)}}} "
                "may be set per run; set other cluster keys in the sweep file"
            )
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
        raise ConfigError(
            f"--set {', '.join(s.text for s in sets)}: two runs would get the same id"
        )
    return runs


def axis_value(data: Any, axis: str) -> Any:
    """The value of a grid axis (or set key, dotted) in a run's plain config data; None if
    absent."""
    return _leaf(data, tuple(AXIS_KEYS.get(axis, axis).split(".")))


def _leaf(data: Any, key: KeyPath) -> Any:
    for part in key:
        if not isinstance(data, dict) or part not in data:
            return None
        data = data[part]
    return data


def _apply_sets(
    spec: SweepSpec,
    point: dict[str, Any],
    plain: Run,
    source: str,
    lines: dict,
    sets: list[SetValue],
) -> Run:
    """The run with the command-line sets applied; a new id when they change its config."""
    run = _resolve(spec, point, plain.run_id, source, lines, sets)
    resolved = {**to_dict(run.config), "cluster": dataclasses.asdict(run.resources)}
    before = {**to_dict(plain.config), "cluster": dataclasses.asdict(plain.resources)}
    changed = {
        ".".join(s.key): (_leaf(resolved, s.key), s.text)
        for s in sets
        if _leaf(resolved, s.key) != _leaf(before, s.key)
    }
    if not changed:
        return run
    suffix = "-".join(
        f"{axis_label(k, spec.labels)}{format_value(v)}" for k, (v, _) in changed.items()
    )
    run_id = f"{plain.run_id}-{re.sub(r'[^A-Za-z0-9._-]', '_', suffix)}"
    if not NAME_RE.match(run_id):
        raise ConfigError(
            f"--set {', '.join(t for _, t in changed.values())}: run id {run_id!r} "
            "would be too long or not a plain name"
        )
    run = _resolve(spec, point, run_id, source, lines, sets)
    return dataclasses.replace(run, sets=changed)


def _resolve(
    spec: SweepSpec,
    point: dict[str, Any],
    run_id: str,
    source: str,
    lines: dict,
    sets: Sequence[SetValue] = (),
) -> Run:
    """Merge base < eval < rules < overrides < axes into one run config and its resources."""
    flat: dict[KeyPath, Any] = {}
    origin: dict[KeyPath, KeyPath] = {}

    def put(values: dict, sweep_prefix: KeyPath, run_prefix: KeyPath = ()) -> None:
        f: dict[KeyPath, Any] = {}
        _flatten(values, run_prefix, f)
        o = _sweep_paths(values, sweep_prefix)
        for k, v in f.items():
            flat[k] = v
            origin[k] = o[k[len(run_prefix) :]]

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
        if axis == TOKENIZER_AXIS:
            continue  # not a run-config key: it picks the token store (data.store, below)
        run_key = tuple(AXIS_KEYS.get(axis, axis).split("."))
        flat[run_key] = value
        origin[run_key] = ("grid", axis, list(spec.grid[axis]).index(value))
    for s in sets:  # the command line wins over everything in the file
        for k in [k for k in flat if k[: len(s.key)] == s.key or s.key[: len(k)] == k]:
            del flat[k]  # a set replaces the subtree (or the value) it names
        flat[s.key] = s.value
        origin[s.key] = ("--set", s.text)
    # the data the run trains on, and its name
    store_key = ("data", "store")
    tokenizer = point.get(TOKENIZER_AXIS)
    if tokenizer is not None:
        if store_key in flat:
            raise _SweepLocated(source, lines, origin, run_id).error(
                store_key,
                "the tokenizer axis gives each run its variant's token store: leave data.store out",
            )
        flat[store_key] = str((prepared_dir(spec.output, tokenizer) / "tokens").absolute())
        origin[store_key] = ("tokenizers", tokenizer)
    elif store_key not in flat:
        # absolute: a run's config.yaml must mean the same store from any working directory
        flat[store_key] = str(
            Path(
                spec.data.tokens
                if spec.data.tokens is not None
                else prepared_dir(spec.output) / "tokens"
            ).absolute()
        )
        origin[store_key] = ("data", "tokens")
    if spec.prepare.classifier is not None and flat.get(("samples", "features")) == "classifier":
        # the prepared classifier and the val images as the reference, unless set (absolute)
        for key, path, why in (
            (
                "classifier",
                spec.output / DATA_DIR / "classifier" / "classifier.pt",
                ("prepare", "classifier"),
            ),
            (
                "reference",
                (
                    spec.data.images
                    if spec.data.images is not None
                    else spec.output / DATA_DIR / "images"
                )
                / "val",
                ("data",),
            ),
        ):
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
            raise located.error(
                k, f"rules and overrides may set only cluster.{{{', '.join(RESOURCE_KEYS)}}}"
            )
    try:
        run_data = _unflatten(run_flat)
    except ValueError as e:
        raise located.error(("base",), str(e)) from None
    config = build(RunConfig, run_data, located)
    cluster_data = {f.name: getattr(spec.cluster, f.name) for f in dataclasses.fields(ClusterSpec)}
    cluster_data.update({str(k[1]): v for k, v in resource_flat.items()})
    cluster_data["setup"] = list(cluster_data["setup"])
    resources = build(ClusterSpec, cluster_data, located, ("cluster",))
    _check_processes(config, resources, located)
    return Run(
        run_id=run_id,
        depth=depth,
        axes=point,
        config=config,
        resources=resources,
        run_dir=spec.output / run_id,
    )


def _check_processes(config: RunConfig, res: ClusterSpec, located: _SweepLocated) -> None:
    """What the job's processes (nodes x processes per node) make impossible, found at load
    time rather than by a job that fails after it waited in the queue."""
    procs = res.processes
    shape = f"{res.nodes} node(s) x {res.processes_per_node} process(es)"
    if config.optim.batch_size % procs:
        raise located.error(
            ("optim", "batch_size"),
            f"{config.optim.batch_size} is not divisible by the job's {procs} processes "
            f"({shape}): each process takes an equal share of the global batch",
        )
    if config.runtime.fsdp and procs == 1:
        raise located.error(
            ("runtime", "fsdp"),
            f"FSDP shards the model over processes and this job has one ({shape}); "
            "turn fsdp off or give the job more processes (cluster.gpus_per_node, "
            "cluster.nodes)",
        )


def _with_branches(runs: list[Run], spec: BranchesSpec, loc: Located) -> list[Run]:
    """Each run keeps its stable-phase state at the branch points; each branch follows its
    parent in the list."""
    out: list[Run] = []
    for run in runs:
        optim = run.config.optim
        if optim.schedule != "wsd":
            raise loc.error(
                ("branches",),
                f"run {run.run_id} has optim.schedule "
                f"{optim.schedule!r}: decay branches need a WSD schedule "
                "(set optim.schedule: wsd in base)",
            )
        fractions = spec.fractions(optim.cooldown_frac)
        if optim.cooldown_steps is None:
            for i, f in enumerate(fractions):
                if f >= 1 - optim.cooldown_frac:
                    raise loc.error(
                        ("branches", "at", i) if spec.at else ("branches",),
                        f"branch point {f} is not before run {run.run_id}'s cool-down "
                        f"(which starts at {1 - optim.cooldown_frac:g} of its length)",
                    )
        out.append(
            dataclasses.replace(run, config=dataclasses.replace(run.config, save_at=fractions))
        )
        for f in fractions:
            branch_id = f"{run.run_id}-b{format_value(f)}"
            config = dataclasses.replace(
                run.config,
                run_id=branch_id,
                save_at=(),
                branch=BranchConfig(parent=run.run_id, at=f, cooldown=spec.cooldown),
            )
            out.append(
                Run(
                    run_id=branch_id,
                    depth=run.depth,
                    axes=dict(run.axes, branch=f),
                    config=config,
                    resources=run.resources,
                    run_dir=run.run_dir.parent / branch_id,
                    parent=run.run_id,
                )
            )
    ids = [r.run_id for r in out]
    dup = next((i for i in ids if ids.count(i) > 1), None)
    if dup:
        raise loc.error(("branches",), f"branch run id {dup!r} is also another run's id")
    return out
