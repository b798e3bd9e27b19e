"""Typed configs from YAML: safe loading, one validation pass, errors that say where.

Every config in the toolkit is a (frozen) dataclass. `load_config(cls, path)` reads a YAML
file with PyYAML's safe loader (no object construction), keeps the line of every key, and
builds the dataclass recursively. Anything wrong (an unknown key, a wrong type, a value a
dataclass's `__post_init__` rejects) raises `ConfigError` naming the file, the line and the
dotted key path, e.g. ``sweeps/demo.yaml:14: grid.depth[2]: expected int, got 'six'``.

Dataclasses validate values in `__post_init__` by raising `InvalidValue(field, message)`
(or a ValueError of the same shape, with `field` and `message`: `analysis.settings`
cannot import this module); the builder turns that into a located `ConfigError`.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
import types
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal, TypeVar, Union

import yaml

from scaling.core.cli import InputError

KeyPath = tuple[str | int, ...]
# the largest count a setting may give: exact as a float, so it survives JSON and estimates
MAX_INT = 2**53
T = TypeVar("T")


class ConfigError(InputError):
    """A config value is wrong; the message names the source, line and key path."""


class InvalidValue(ValueError):
    """Raised by a dataclass's `__post_init__`: `field` holds a value that is not allowed
    (dotted, 'eval.points', for a key of a nested section)."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field
        self.message = message


def format_path(path: KeyPath) -> str:
    """('grid', 'depth', 2) -> 'grid.depth[2]'."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "<top level>"


class Located:
    """Where each key path of a YAML document sits: file name and 1-based line."""

    def __init__(self, source: str, lines: dict[KeyPath, int] | None = None):
        self.source = source
        self.lines = lines or {}

    def where(self, path: KeyPath) -> str:
        # fall back to the closest enclosing key that has a line
        for cut in range(len(path), -1, -1):
            line = self.lines.get(tuple(path[:cut]))
            if line is not None:
                return f"{self.source}:{line}"
        return self.source

    def error(self, path: KeyPath, message: str) -> ConfigError:
        return ConfigError(f"{self.where(path)}: {format_path(path)}: {message}")


def _collect_lines(node: yaml.Node, path: KeyPath, lines: dict[KeyPath, int], source: str) -> None:
    lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        seen: dict[Any, int] = {}
        for key_node, value_node in node.value:
            key = key_node.value
            line = key_node.start_mark.line + 1
            if key in seen:
                raise ConfigError(
                    f"{source}:{line}: {format_path(path + (key,))}: duplicate key "
                    f"(first given on line {seen[key]})"
                )
            seen[key] = line
            lines[path + (key,)] = line
            _collect_lines(value_node, path + (key,), lines, source)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            lines[path + (i,)] = item.start_mark.line + 1
            _collect_lines(item, path + (i,), lines, source)


# a config's nodes with every alias expanded: far above any real config, far below a bomb's
MAX_EXPANDED_NODES = 100_000


def _check_expansion(root: yaml.Node, source: str) -> None:
    """Refuse a document whose aliases expand to more than MAX_EXPANDED_NODES nodes (an
    "alias bomb": a few lines that expand to billions) or refer to themselves; counted in
    time linear in the document (each distinct node once), so a bomb is refused at once."""
    sizes: dict[int, int] = {}
    busy: set[int] = set()

    def size(node: yaml.Node) -> int:
        key = id(node)
        if key in sizes:
            return sizes[key]
        if key in busy:
            raise ConfigError(
                f"{source}:{node.start_mark.line + 1}: invalid YAML: an alias refers to "
                "the node that holds it (a recursive structure)"
            )
        busy.add(key)
        total = 1
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                total += size(k) + size(v)
                if total > MAX_EXPANDED_NODES:
                    break
        elif isinstance(node, yaml.SequenceNode):
            for item in node.value:
                total += size(item)
                if total > MAX_EXPANDED_NODES:
                    break
        busy.discard(key)
        sizes[key] = total
        if total > MAX_EXPANDED_NODES:
            raise ConfigError(
                f"{source}:{node.start_mark.line + 1}: invalid YAML: its aliases expand to "
                f"more than {MAX_EXPANDED_NODES:,} values (an alias bomb?); refusing to read it"
            )
        return total

    size(root)


def load_yaml(path: str | Path) -> tuple[Any, Located]:
    """Read a YAML file safely; return (plain data, line locations of every key path)."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as e:
        raise ConfigError(f"{path}: cannot read: {e.strerror or e}") from None
    return parse_yaml(text, str(path))


def parse_yaml(text: str, source: str = "<string>") -> tuple[Any, Located]:
    """Parse YAML text safely (no object construction); see `load_yaml`."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        if node is not None:
            _check_expansion(node, source)  # before anything walks the aliases
        data = yaml.load(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line = f":{mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{source}{line}: invalid YAML: {e.problem or e}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{source}: invalid YAML: {e}") from None
    lines: dict[KeyPath, int] = {}
    if node is not None:
        _collect_lines(node, (), lines, source)
    return data, Located(source, lines)


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return " | ".join(repr(a) for a in typing.get_args(tp))
    if origin in (Union, types.UnionType):
        return " | ".join(_type_name(a) for a in typing.get_args(tp))
    if tp is type(None):
        return "null"
    if origin is not None:
        args = ", ".join("..." if a is Ellipsis else _type_name(a) for a in typing.get_args(tp))
        return f"{origin.__name__}[{args}]"
    return getattr(tp, "__name__", str(tp))


def _convert(value: Any, tp: Any, path: KeyPath, loc: Located) -> Any:
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None:
            if type(None) in args:
                return None
            raise loc.error(path, f"expected {_type_name(tp)}, got null")
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(value, arg, path, loc)
            except ConfigError as e:
                errors.append(e)
        if len(errors) == 1:
            raise errors[0]
        raise loc.error(path, f"expected {_type_name(tp)}, got {value!r}")
    if origin is Literal:
        allowed = typing.get_args(tp)
        if value not in allowed:
            hint = difflib.get_close_matches(str(value), [str(a) for a in allowed], n=1)
            extra = f" (did you mean {hint[0]!r}?)" if hint else ""
            raise loc.error(
                path, f"must be one of {', '.join(repr(a) for a in allowed)}; got {value!r}{extra}"
            )
        return value
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return build(tp, value, loc, path)
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise loc.error(path, f"expected a list ({_type_name(tp)}), got {value!r}")
        args = typing.get_args(tp)
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(args) != len(value):
                raise loc.error(path, f"expected {len(args)} items, got {len(value)}")
            items = [_convert(v, a, path + (i,), loc) for i, (v, a) in enumerate(zip(value, args))]
        else:
            item_tp = args[0] if args else Any
            items = [_convert(v, item_tp, path + (i,), loc) for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            raise loc.error(path, f"expected a mapping, got {value!r}")
        key_tp, val_tp = typing.get_args(tp) or (Any, Any)
        return {
            _convert(k, key_tp, path, loc): _convert(v, val_tp, path + (k,), loc)
            for k, v in value.items()
        }
    if tp is bool:
        if not isinstance(value, bool):
            raise loc.error(path, f"expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            # YAML reads 1e6 as a string and 1.0e6 as a float: accept whole numbers
            as_float = _as_float(value)
            if as_float is not None and not math.isfinite(as_float):
                raise loc.error(path, f"expected an integer, got {value!r} (not finite)")
            if as_float is not None and as_float.is_integer() and not isinstance(value, bool):
                value = int(as_float)
            else:
                raise loc.error(path, f"expected an integer, got {value!r}")
        if abs(value) > MAX_INT:
            raise loc.error(path, f"{value:.3g} is too large (at most {MAX_INT:.3g})")
        return value
    if tp is float:
        as_float = _as_float(value)
        if as_float is None or isinstance(value, bool):
            raise loc.error(path, f"expected a number, got {value!r}")
        if not math.isfinite(as_float):
            raise loc.error(path, f"must be a finite number, got {value!r}")
        return as_float
    if tp is str:
        if not isinstance(value, str):
            raise loc.error(path, f"expected a string, got {value!r}")
        return value
    if tp is Path:
        if not isinstance(value, str) or not value:
            raise loc.error(path, f"expected a path, got {value!r}")
        return Path(value)
    raise TypeError(f"config_io cannot convert to {tp!r} (at {format_path(path)})")


def _as_float(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):  # YAML 1.1 reads '1e-4' (no dot) as a string
        try:
            return float(value)
        except ValueError:
            return None
    return None


def build(cls: type, data: Any, loc: Located | None = None, path: KeyPath = ()) -> Any:
    """Build dataclass `cls` from plain data, checking keys and types; errors are located."""
    loc = loc or Located("<config>")
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise loc.error(path, f"expected a mapping for {cls.__name__}, got {data!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = [k for k in data if k not in fields]
    if unknown:
        key = unknown[0]
        renamed = getattr(cls, "RENAMED", {}).get(key)  # {old key: "new key[; a hint]"}
        if renamed is not None:  # an old spelling: name the one key
            new, _, hint = renamed.partition(";")
            raise loc.error(
                path + (key,),
                f"not a key: the setting is spelled {format_path(path + (new,))}"
                + (f" ({hint.strip()})" if hint else ""),
            )
        hint = difflib.get_close_matches(str(key), list(fields), n=1)
        extra = f" (did you mean {hint[0]!r}?)" if hint else ""
        raise loc.error(path + (key,), f"unknown key{extra}; allowed: {', '.join(fields)}")
    kwargs = {}
    for name, f in fields.items():
        if name in data:
            kwargs[name] = _convert(data[name], hints[name], path + (name,), loc)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise loc.error(path + (name,), f"required key missing in {cls.__name__}")
    try:
        return cls(**kwargs)
    except (
        ValueError
    ) as e:  # InvalidValue or its like; a dotted field names a key of a nested section
        field = getattr(e, "field", None)
        if not isinstance(field, str):
            raise
        raise loc.error(path + tuple(field.split(".")), getattr(e, "message", str(e))) from None


def load_config(cls: type, path: str | Path) -> Any:
    """Load YAML file `path` into dataclass `cls` (see module docstring)."""
    data, loc = load_yaml(path)
    return build(cls, data, loc)


def to_dict(obj: Any) -> Any:
    """Dataclass -> plain YAML-able data (tuples become lists, Paths strings)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    if isinstance(obj, Path):
        return str(obj)
    return obj


@dataclasses.dataclass(frozen=True)
class SetValue:
    """One ``--set KEY=VALUE``: the key path, its value (YAML), the text typed."""

    key: tuple[str, ...]
    value: Any
    text: str


def parse_sets(sets: Sequence[str], example: str = "optim.base_lr=3e-3") -> list[SetValue]:
    """``["optim.base_lr=3e-3", ...]`` -> SetValues; a malformed one is a ConfigError naming it
    (its message shows `example`, a valid set of the command).

    The value is read as YAML (``3``, ``true``, ``[1, 2]``, ``null``); a number written
    without a dot (``3e-3``) is a number.
    """
    out = []
    for text in sets:
        key, eq, raw = text.partition("=")
        key = key.strip()
        if not eq or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*", key):
            raise ConfigError(
                f"--set {text!r}: expected KEY=VALUE with a dotted key, e.g. --set {example}"
            )
        try:
            value = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError as e:
            raise ConfigError(f"--set {text!r}: the value is not valid YAML ({e})") from None
        if isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                pass
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"--set {text!r}: must be a finite number, got {value!r}")
        out.append(SetValue(tuple(key.split(".")), value, text))
    return out


def apply_sets(obj: T, sets: Sequence[SetValue]) -> T:
    """Config dataclass `obj` with command-line `sets` applied (later ones win), each checked
    as if it were written in a file: an unknown key, a wrong type or an impossible value is a
    ConfigError that names the ``--set`` as typed."""
    data = to_dict(obj)
    for s in sets:
        node = data
        for part in s.key[:-1]:
            if not isinstance(node.get(part), dict):  # an unset optional section
                node[part] = {}
            node = node[part]
        node[s.key[-1]] = s.value
        build(type(obj), data, Located(f"--set {s.text}"))  # this set's error names it
    return build(type(obj), data, Located("--set"))


def dump_yaml(obj: Any) -> str:
    """Dataclass or plain data -> YAML text with keys in declaration order."""
    return yaml.safe_dump(to_dict(obj), sort_keys=False, default_flow_style=None)
