"""Sweep files: one YAML file describes a whole scaling study; this module loads and checks it.

A sweep names an output folder, the data (an existing token store, or images and a VQVAE to
prepare first), a `base` run config, the grid axes (depth, and any run-config key, crossed),
rules that derive values from the depth (batch, learning rate, epochs, nodes and GPUs ...),
per-depth overrides, the evaluation schedule, the cluster settings and the fit defaults.
See sweeps/depth_grid.yaml for a commented example; the sections are the dataclasses of
`scaling.study.sweep.spec`, and `scaling.study.sweep.expand` turns the grid into runs (run ids,
precedence, command-line sets).

Loading validates everything once (`load_sweep`): every run's resolved config is built, so an
unknown key, a wrong type or an impossible value anywhere is a `ConfigError` that names the
sweep file, the line and the key path *in the sweep* where the offending value was written
(e.g. ``sweeps/x.yaml:31: overrides.16.optim.wpe: ...``). The top-level `description:` and a
rule's `why:` are notes for the reader of the file: checked to be text, and not kept.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import re
from pathlib import Path
from typing import Any

from analysis.settings import FitSettings
from contracts.tokenizer import FILE as QUALITY_FILE
from scaling.core.config_io import ConfigError, Located, build, load_yaml
from scaling.data.folders import ImageFolderError, count_split, read_classes_file
from scaling.data.vqvae_config import VQVAETrainConfig
from scaling.data.vqvae_header import HeaderUnreadable, VQVAEHeader, read_vqvae_header
from scaling.study.sweep.expand import Run, axis_label, expand
from scaling.study.sweep.spec import (
    DATA_DIR,
    NAME_RE,
    RESERVED_DATA_NAMES,
    TOKENIZER_AXIS,
    StoreHint,
    SweepSpec,
    prepared_dir,
)

SWEEP_COPY = "sweep.yaml"  # <output>/sweep.yaml: the sweep file as last launched


@dataclasses.dataclass(frozen=True)
class Tokenizer:
    """One token store of a sweep and how it is made: the sweep's only one (`name` None: no
    `tokenizers:`, paths as ever), or a variant of `tokenizers:` (under `<output>/_data/<name>`).

    Exactly one of `tokens` (an existing store: data.tokens), `checkpoint` (an existing VQVAE:
    data.vqvae or the variant's `checkpoint:`) and `options` (the VQVAE to train: prepare.vqvae
    with the variant's overrides) is set, unless the sweep gives a store.
    """

    name: str | None
    root: Path  # where its VQVAE and token store are prepared
    tokens: Path | None = None  # an existing token store
    checkpoint: Path | None = None  # an existing VQVAE checkpoint
    options: dict[str, Any] | None = None  # VQVAE training options (images/out: the sweep's)

    @property
    def store(self) -> Path:
        """The token store its runs train on."""
        return self.tokens if self.tokens is not None else self.root / "tokens"

    @property
    def vqvae_path(self) -> Path:
        """The VQVAE checkpoint that tokenises (given, or trained under `root`)."""
        return self.checkpoint if self.checkpoint is not None else self.root / "vqvae" / "vqvae.pt"

    def stage(self, kind: str) -> str:
        """A preparation stage of this store: 'vqvae' -> 'v128.vqvae' for a variant."""
        return kind if self.name is None else f"{self.name}.{kind}"

    @property
    def measured(self) -> bool:
        """Whether the sweep measures its VQVAE's quality (a `quality` stage): a trained one,
        or a variant's checkpoint (so that every variant of a study is measured)."""
        return self.tokens is None and (self.options is not None or self.name is not None)

    @property
    def quality_path(self) -> Path:
        """Where its measured quality goes (`contracts.tokenizer`)."""
        return (
            self.root / "vqvae" / QUALITY_FILE
            if self.name is not None
            else (self.vqvae_path.parent / QUALITY_FILE)
        )

    def stages(self) -> list[str]:
        """Its stages in order: 'vqvae' (when trained) and 'tokenize' (when not given)."""
        if self.tokens is not None:
            return []
        return [self.stage("vqvae")] * (self.options is not None) + [self.stage("tokenize")]


def split_stage(stage: str) -> tuple[str | None, str]:
    """'v128.tokenize' -> ('v128', 'tokenize'); 'tokenize' -> (None, 'tokenize')."""
    name, _, kind = stage.rpartition(".")
    return (name or None), kind


@dataclasses.dataclass(frozen=True)
class Sweep:
    """A loaded, validated and expanded sweep (`warnings`: what loading found doubtful, e.g.
    two identical tokenizer variants; the launch table prints them)."""

    spec: SweepSpec
    source: str
    runs: tuple[Run, ...]
    warnings: tuple[str, ...] = ()

    @property
    def output(self) -> Path:
        return self.spec.output

    @property
    def data_dir(self) -> Path:
        """Where prepared data (images, VQVAE, token store) goes."""
        return self.spec.output / DATA_DIR

    def tokenizers(self) -> tuple[Tokenizer, ...]:
        """The sweep's token stores: one without `tokenizers:`, else one per variant that
        `grid.tokenizer` uses, in its order."""
        d, prep = self.spec.data, self.spec.prepare
        if not self.spec.tokenizers:
            return (
                Tokenizer(
                    name=None,
                    root=prepared_dir(self.output),
                    tokens=d.tokens,
                    checkpoint=d.vqvae,
                    options=prep.vqvae if d.vqvae is None else None,
                ),
            )
        out = []
        for name in self.spec.grid.get(TOKENIZER_AXIS, ()):
            variant = self.spec.tokenizers[name]
            root = prepared_dir(self.output, name)
            if "checkpoint" in variant:
                out.append(Tokenizer(name, root, checkpoint=Path(variant["checkpoint"])))
            else:
                out.append(Tokenizer(name, root, options={**(prep.vqvae or {}), **variant}))
        return tuple(out)

    def tokenizer(self, name: str | None = None) -> Tokenizer:
        """The token store `name` (a variant's name; None: the sweep's first)."""
        found = self.tokenizers()
        for t in found:
            if name is None or t.name == name:
                return t
        raise KeyError(f"sweep {self.spec.name} has no tokenizer {name!r}")

    def tokenizer_of(self, run: Run) -> Tokenizer:
        """The token store `run` trains on."""
        return self.tokenizer(run.axes.get(TOKENIZER_AXIS))

    def token_store(self, tokenizer: str | None = None) -> Path:
        """The token store the runs (of variant `tokenizer`) train on (existing, or the one
        prepared under data_dir)."""
        return self.tokenizer(tokenizer).store

    def stages(self) -> list[str]:
        """Preparation stages this sweep needs, in order: 'synthetic', then each token store's
        'vqvae' and 'tokenize' (a variant's named 'v128.vqvae', 'v128.tokenize'), then
        'classifier' (with prepare.classifier), then each measured VQVAE's 'quality' (it is
        measured as a tokenizer after the classifier whose features it uses)."""
        d = self.spec.data
        extra = ["classifier"] if self.spec.prepare.classifier is not None else []
        if d.tokens is not None:
            return extra
        out = ["synthetic"] if d.images is None else []
        for t in self.tokenizers():
            out += t.stages()
        return out + extra + [t.stage("quality") for t in self.tokenizers() if t.measured]

    def quality_path(self, tokenizer: str | None = None) -> Path:
        """A VQVAE's quality as a tokenizer (`contracts.tokenizer`), beside the trained one
        (a checkpoint variant's in `<output>/_data/<name>/vqvae/`)."""
        return self.tokenizer(tokenizer).quality_path

    def classifier_path(self) -> Path:
        """The demo classifier trained by the `classifier` stage."""
        return self.data_dir / "classifier" / "classifier.pt"

    def images_dir(self) -> Path:
        """The images to tokenise (given, or generated under data_dir)."""
        return (
            self.spec.data.images if self.spec.data.images is not None else self.data_dir / "images"
        )

    def vqvae_path(self, tokenizer: str | None = None) -> Path:
        """The VQVAE checkpoint used for tokenising (given, or trained under data_dir)."""
        return self.tokenizer(tokenizer).vqvae_path

    def expected_source(self, tokenizer: str | None = None) -> str:
        """Where `expected_meta` takes its numbers from, in words (the launch table says it)."""
        data, prep = self.spec.data, self.spec.prepare
        if data.expect is not None:
            return "data.expect"
        t = self.tokenizer(tokenizer)
        parts = []
        if prep.synthetic is not None:
            parts.append("prepare.synthetic")
        elif data.images is not None:
            parts.append(f"the images in {data.images} (counted)")
        if t.options is not None:
            parts.append(
                "prepare.vqvae" if t.name is None else f"prepare.vqvae and tokenizers.{t.name}"
            )
        elif t.checkpoint is not None:
            header, why = _checkpoint_header(t.checkpoint)
            parts.append(
                f"the VQVAE {t.checkpoint} (read)"
                if header is not None
                else f"the official VQVAE's vocabulary and scales (assumed: {why})"
            )
        if not parts:
            return "ImageNet-1k at 256 px, the official VQVAE (assumed; data.expect overrides)"
        return " and ".join(parts)

    def expected_meta(self, tokenizer: str | None = None) -> dict[str, Any]:
        """Stand-in for the token store's meta.json, for estimates before the store exists:
        `data.expect` when given (an override), else what `prepare:` will make (the synthetic
        set's or the image folder's counts, the VQVAE's vocabulary, scales and code width:
        the recipe's, or read from an existing checkpoint's structure)."""
        if self.spec.data.expect is not None:
            return self._runs_views(self.spec.data.expect).meta()
        hint = StoreHint()
        syn = self.spec.prepare.synthetic
        tok = self.spec.prepare.tokenize
        t = self.tokenizer(tokenizer)
        if self.spec.data.tokens is None:  # the sweep tokenises: its views are tokenize's
            hint = dataclasses.replace(hint, views=tok.views, flip=tok.flip)
        if syn is not None:
            hint = dataclasses.replace(
                hint,
                num_classes=syn.num_classes,
                train_images=syn.num_classes * syn.train_per_class,
                val_images=syn.num_classes * syn.val_per_class,
            )
        elif self.spec.data.images is not None:  # your own folder: counted (names only)
            hint = self._counted(hint, self.spec.data.images)
        if t.options is not None:
            defaults = {f.name: f.default for f in dataclasses.fields(VQVAETrainConfig)}
            options = {**defaults, **t.options}
            hint = dataclasses.replace(
                hint,
                vocab_size=int(options.get("vocab_size", hint.vocab_size)),
                patch_nums=tuple(options.get("patch_nums", hint.patch_nums)),
                z_channels=int(options.get("z_channels", hint.z_channels)),
            )
        elif t.checkpoint is not None:
            header, _ = _checkpoint_header(t.checkpoint)
            if header is not None:
                hint = dataclasses.replace(
                    hint,
                    vocab_size=header.vocab_size,
                    patch_nums=header.patch_nums,
                    z_channels=header.z_channels,
                )
        return self._runs_views(hint).meta()

    def _runs_views(self, hint: StoreHint) -> StoreHint:
        """`hint` with the views and flip the runs require (base.data.views / flip, checked
        against the store before training) where data.expect leaves them out."""
        data = self.spec.base.get("data")
        data = data if isinstance(data, dict) else {}
        views, flip = data.get("views"), data.get("flip")
        if hint.views is None and isinstance(views, int) and not isinstance(views, bool):
            hint = dataclasses.replace(hint, views=views)
        if hint.flip is None and isinstance(flip, bool):
            hint = dataclasses.replace(hint, flip=flip)
        return hint

    @staticmethod
    def _counted(hint: StoreHint, images: Path) -> StoreHint:
        """`hint` with the image folder's train/val image and class counts, when it is there
        (the classes: classes.json beside the splits, else the train split's folders)."""
        train, val = images / "train", images / "val"
        try:
            n_train, n_classes = count_split(train)
            n_val = count_split(val)[0] if val.is_dir() else hint.val_images
            listed = read_classes_file(images)
        except ImageFolderError:  # not there yet (another machine), or not a folder: ImageNet
            return hint
        return dataclasses.replace(
            hint,
            train_images=n_train,
            val_images=n_val,
            num_classes=len(listed) if listed else n_classes,
        )

    def select(self, only: str | None = None, exclude: str | None = None) -> list[Run]:
        """Runs filtered by comma-separated glob patterns on run ids (``--only 'd1*,d20'``)."""
        return [r for r in self.runs if selected(r.run_id, only, exclude)]


def _checkpoint_header(path: Path) -> tuple[VQVAEHeader | None, str]:
    """(the checkpoint's token geometry, '') or (None, why it could not be read)."""
    try:
        return read_vqvae_header(path), ""
    except HeaderUnreadable as e:
        return None, str(e)


def selected(run_id: str, only: str | None, exclude: str | None) -> bool:
    """Whether `run_id` matches `only` (if given) and not `exclude`: comma-separated globs."""

    def hit(patterns: str) -> bool:
        return any(fnmatch.fnmatchcase(run_id, p.strip()) for p in patterns.split(",") if p.strip())

    return (not only or hit(only)) and not (exclude and hit(exclude))


def load_sweep(path: str | Path, sets: tuple[str, ...] | list[str] = ()) -> Sweep:
    """Read, validate and expand a sweep file; raise ConfigError (file:line: key: message).

    `sets`: ``KEY=VALUE`` texts (``--set`` on the command line) applied over every run (see
    the module docstring)."""
    data, loc = load_yaml(path)
    return sweep_from_data(data, loc, sets)


def sweep_from_data(data: Any, loc: Located, sets: tuple[str, ...] | list[str] = ()) -> Sweep:
    """Validate plain sweep data (with its line locations) and expand the grid into runs."""
    data = _without_notes(data, loc)
    if isinstance(data, dict):
        tokenizers = data.get("tokenizers")
        if isinstance(tokenizers, dict) and any(isinstance(k, bool) for k in tokenizers):
            raise loc.error(
                ("tokenizers",),
                "YAML reads a name such as off, on, yes or no as true/false: quote it ('off')",
            )
        for section in ("overrides", "tokenizers"):
            if isinstance(data.get(section), dict):
                # YAML reads `16:` as an int key; keep them as written (strings) for paths and lines
                data = dict(data, **{section: {str(k): v for k, v in data[section].items()}})
    data, loc = _with_tokenizer_axis(data, loc)
    spec: SweepSpec = build(SweepSpec, data, loc)
    _check_static(spec, loc)
    warnings = tuple(_check_tokenizers(spec, loc))
    return Sweep(
        spec=spec, source=loc.source, runs=tuple(expand(spec, loc, sets)), warnings=warnings
    )


def _with_tokenizer_axis(data: Any, loc: Located) -> tuple[Any, Located]:
    """With `tokenizers:` and no `grid.tokenizer`: the axis of every variant, in file order,
    right after the depth (run ids `d4-v128`); its values located at the variants' lines."""
    if not (isinstance(data, dict) and isinstance(data.get("tokenizers"), dict)):
        return data, loc
    grid = data.get("grid")
    if not data["tokenizers"] or not isinstance(grid, dict) or TOKENIZER_AXIS in grid:
        return data, loc
    names = list(data["tokenizers"])
    keys = list(grid)
    at = keys.index("depth") + 1 if "depth" in keys else 0
    grid = {**{k: grid[k] for k in keys[:at]}, TOKENIZER_AXIS: names}
    grid.update({k: data["grid"][k] for k in keys[at:]})
    lines = dict(loc.lines)
    for i, name in enumerate(names):
        where = next(
            (
                v
                for k, v in loc.lines.items()
                if k[:1] == ("tokenizers",) and len(k) == 2 and str(k[1]) == name
            ),
            None,
        )
        if where is not None:
            lines[("grid", TOKENIZER_AXIS, i)] = where
    if ("tokenizers",) in loc.lines:
        lines[("grid", TOKENIZER_AXIS)] = loc.lines[("tokenizers",)]
    return dict(data, grid=grid), Located(loc.source, lines)


def _without_notes(data: Any, loc: Located) -> Any:
    """The sweep data without its notes for the reader: `description` and each rule's `why`."""
    data = _drop_note(data, ("description",), loc)
    if isinstance(data, dict) and isinstance(data.get("rules"), list):
        data = dict(
            data,
            rules=[
                _drop_note(rule, ("rules", i, "why"), loc) for i, rule in enumerate(data["rules"])
            ],
        )
    return data


def _drop_note(mapping: Any, path: tuple, loc: Located) -> Any:
    """`mapping` without the note `path[-1]`, which must be text."""
    key = path[-1]
    if not isinstance(mapping, dict) or key not in mapping:
        return mapping
    if not isinstance(mapping[key], str):
        raise loc.error(path, f"expected a string (a note for the reader), got {mapping[key]!r}")
    return {k: v for k, v in mapping.items() if k != key}


def _check_static(spec: SweepSpec, loc: Located) -> None:
    """Checks across sections that a single dataclass cannot make."""
    for i, depth in enumerate(spec.grid["depth"]):
        if isinstance(depth, bool) or not isinstance(depth, int) or depth < 1:
            raise loc.error(
                ("grid", "depth", i), f"a depth must be a positive integer, got {depth!r}"
            )
    depths = set(spec.grid["depth"])
    seen: dict[int, str] = {}
    for key in spec.overrides:
        m = re.fullmatch(r"d?([1-9]\d*)", key)
        if not m:
            raise loc.error(
                ("overrides", key),
                "override keys are depths written 16 or d16 (no leading zeros, nothing else)",
            )
        if int(m.group(1)) in seen:
            raise loc.error(
                ("overrides", key),
                f"depth {int(m.group(1))} already has overrides "
                f"under key {seen[int(m.group(1))]!r}: merge them "
                "into one",
            )
        seen[int(m.group(1))] = key
        if int(m.group(1)) not in depths:
            raise loc.error(
                ("overrides", key), f"depth {int(m.group(1))} is not in grid.depth {sorted(depths)}"
            )
        if not isinstance(spec.overrides[key], dict):
            raise loc.error(("overrides", key), "expected a mapping of config keys to values")
    for axis, values in spec.grid.items():
        if len(set(map(repr, values))) != len(values):
            raise loc.error(("grid", axis), "repeated value")
    labels = [axis_label(a, spec.labels) for a in spec.grid]
    for axis, label in zip(spec.grid, labels):
        if labels.count(label) > 1:
            raise loc.error(
                ("grid", axis), f"two axes share the run-id label {label!r}: set labels"
            )
    if spec.data.tokens is None and spec.data.images is None and spec.prepare.synthetic is None:
        raise loc.error(
            ("data",),
            "no data: give data.tokens (a token store), data.images "
            "(an image folder) or prepare.synthetic",
        )
    if spec.data.images is not None and spec.prepare.synthetic is not None:
        raise loc.error(("prepare", "synthetic"), "data.images is given: nothing to generate")
    if spec.data.vqvae is not None and spec.prepare.vqvae is not None:
        raise loc.error(("prepare", "vqvae"), "data.vqvae is given: nothing to train")
    if (
        spec.data.tokens is None
        and spec.data.vqvae is None
        and spec.prepare.vqvae is None
        and not spec.tokenizers
    ):
        raise loc.error(
            ("data",), "images need a VQVAE: give data.vqvae, prepare.vqvae or tokenizers"
        )
    if spec.prepare.vqvae is not None:
        _check_vqvae_options(spec.prepare.vqvae, loc)
    if (
        spec.prepare.classifier is not None
        and spec.data.images is None
        and spec.prepare.synthetic is None
    ):
        raise loc.error(
            ("prepare", "classifier"), "needs images: give data.images or prepare.synthetic"
        )
    build(FitSettings, spec.fit, loc, ("fit",))


def _check_tokenizers(spec: SweepSpec, loc: Located) -> list[str]:
    """Check `tokenizers:` and `grid.tokenizer` (errors located at the variant's key); return
    the warnings: variants declared but not in the grid, variants identical to another."""
    variants, grid = spec.tokenizers, spec.grid.get(TOKENIZER_AXIS)
    if not variants:
        if grid is not None:
            raise loc.error(
                ("grid", TOKENIZER_AXIS),
                "the tokenizer axis takes the names of the variants declared under "
                "`tokenizers:` (none are declared)",
            )
        return []
    if spec.data.tokens is not None:
        raise loc.error(
            ("tokenizers",),
            "data.tokens is an existing token store: nothing to tokenise (drop one of the two)",
        )
    if spec.data.vqvae is not None:
        raise loc.error(
            ("data", "vqvae"),
            "with tokenizers:, give an existing VQVAE as a variant (NAME: {checkpoint: PATH})",
        )
    effective: dict[str, Any] = {}
    defaults = {f.name: f.default for f in dataclasses.fields(VQVAETrainConfig)}
    for name, options in variants.items():
        where = ("tokenizers", name)
        if not NAME_RE.match(name) or ".." in name:
            raise loc.error(
                where,
                f"tokenizer name {name!r} must be a plain name: letters, digits, '.', '_', '-' "
                "(it names a folder and is part of run ids)",
            )
        if name in RESERVED_DATA_NAMES:
            raise loc.error(
                where,
                f"{name!r} is a shared folder of <output>/{DATA_DIR} "
                f"({', '.join(RESERVED_DATA_NAMES)} are taken): pick another name",
            )
        if "checkpoint" in options:
            others = [k for k in options if k != "checkpoint"]
            if others:
                raise loc.error(
                    where + (others[0],),
                    "a variant with checkpoint: uses that VQVAE as it is: it takes no "
                    "training options (give them in a variant without checkpoint)",
                )
            path = options["checkpoint"]
            if not isinstance(path, str) or not path:
                raise loc.error(where + ("checkpoint",), f"expected a path, got {path!r}")
            effective[name] = ("checkpoint", str(Path(path).absolute()))
            continue
        for key in ("images", "out"):
            if key in options:
                raise loc.error(
                    where + (key,),
                    f"set by the sweep (data.images or <output>/{DATA_DIR}/{name}/...): "
                    "leave it out",
                )
        merged = {**(spec.prepare.vqvae or {}), **options}
        built = build(VQVAETrainConfig, dict(merged, images="images", out="out"), loc, where)
        effective[name] = (
            "options",
            repr({k: getattr(built, k) for k in defaults if k not in ("images", "out")}),
        )
    used = list(grid or ())
    for i, value in enumerate(used):
        if not isinstance(value, str) or value not in variants:
            raise loc.error(
                ("grid", TOKENIZER_AXIS, i),
                f"{value!r} is not a variant of tokenizers: ({', '.join(variants)})",
            )
    notes = []
    unused = [n for n in variants if n not in used]
    if unused:
        notes.append(
            f"tokenizers {', '.join(unused)} are declared but not in grid.tokenizer: "
            "not prepared, no runs"
        )
    seen: dict[Any, str] = {}
    for name in used:
        first = seen.setdefault(effective[name], name)
        if first != name:
            notes.append(
                f"tokenizers {first} and {name} are identical (the same "
                + ("VQVAE checkpoint" if effective[name][0] == "checkpoint" else "VQVAE options")
                + "): each is prepared, so their runs repeat each other"
            )
    return notes


def _check_vqvae_options(options: dict, loc: Located) -> None:
    """Check prepare.vqvae against the VQVAE trainer's config (images/out are the sweep's)."""
    for key in ("images", "out"):
        if key in options:
            raise loc.error(
                ("prepare", "vqvae", key),
                f"set by the sweep (data.images or <output>/{DATA_DIR}/...): leave it out",
            )
    build(VQVAETrainConfig, dict(options, images="images", out="out"), loc, ("prepare", "vqvae"))


def sweep_file_for(source: str | Path) -> Path:
    """What `launch`, `status` and `fit` were given -> the sweep file.

    A file is the sweep itself; a folder is a sweep's output (runs folder), whose
    ``sweep.yaml`` the launcher copied there. Raises ConfigError saying what is missing.
    """
    source = Path(source)
    if source.is_dir():
        copy = source / SWEEP_COPY
        if not copy.is_file():
            raise ConfigError(
                f"{source}: a folder without {SWEEP_COPY}: not the output of "
                "`python -m scaling.launch` (give the sweep file instead)"
            )
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
        raise ConfigError(
            f"{path}: its output is {sweep.output} ({sweep.output.resolve()}), "
            f"not {Path(source).resolve()}: run from the directory it was launched "
            "from, or give the sweep file"
        )
    return sweep
