"""Generate docs/configuration.md from the configuration dataclasses themselves.

Every key of a run config, a sweep file, a fit (fit.yaml, a sweep's `fit:` section, `--set`)
and a VQVAE training config is listed with its type, its default and what it means, taken
from the code: the field's own comments (on its line, inside its default, or on the comment
lines just above it), else a ``name: text`` line of its class docstring. Nothing is copied by
hand, so the reference cannot drift from the code; tests/test_config_reference.py fails
when the committed file differs from what this script writes.

    python scripts/figures/config_reference.py           # rewrite docs/configuration.md
    python scripts/figures/config_reference.py --check   # exit 1 when it is out of date
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import inspect
import re
import sys
import textwrap
import typing
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "docs" / "configuration.md"
if str(ROOT) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(ROOT))


def _field_comments(cls: type) -> dict[str, str]:
    """{field: its comments joined}: the comment lines directly above the field, then the
    comments within the field's own lines (trailing, or inside a multi-line default)."""
    source = textwrap.dedent(inspect.getsource(cls))
    lines = source.splitlines()
    tree = ast.parse(source)
    body = tree.body[0]
    assert isinstance(body, ast.ClassDef)
    out: dict[str, str] = {}
    for node in body.body:
        if not isinstance(node, ast.AnnAssign) or not isinstance(node.target, ast.Name):
            continue
        parts: list[str] = []
        above = node.lineno - 2  # 0-based index of the line above the field
        block: list[str] = []
        while above >= 0 and lines[above].strip().startswith("#"):
            block.insert(0, lines[above].strip().lstrip("#").strip())
            above -= 1
        parts += block
        for line in lines[node.lineno - 1 : (node.end_lineno or node.lineno)]:
            code, hash_, comment = _split_comment(line)
            if hash_:
                parts.append(comment.strip())
        text = " ".join(p for p in parts if p)
        if text:
            out[node.target.id] = text
    return out


def _split_comment(line: str) -> tuple[str, str, str]:
    """A source line -> (code, '#', comment) outside string literals; ('line', '', '')."""
    quote = None
    for i, ch in enumerate(line):
        if quote:
            if ch == quote and line[i - 1] != "\\":
                quote = None
        elif ch in "\"'":
            quote = ch
        elif ch == "#":
            return line[:i], "#", line[i + 1 :]
    return line, "", ""


def _docstring_fields(cls: type) -> dict[str, str]:
    """``name: text`` entries of the class docstring (continuation lines indented)."""
    doc = inspect.getdoc(cls) or ""
    out: dict[str, str] = {}
    current = None
    names = {f.name for f in dataclasses.fields(cls)}
    for line in doc.splitlines():
        m = re.match(r"^`?([a-z_]+)`?: (.*)$", line)
        if m and m.group(1) in names:
            current = m.group(1)
            out[current] = m.group(2).strip()
        elif current and line.startswith((" ", "\t")) and line.strip():
            out[current] += " " + line.strip()
        else:
            current = None
    return out


def _type_text(tp: Any) -> str:
    """A type annotation in the reader's words (``int | null``, ``list of int``)."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is type(None):
        return "null"
    if origin is typing.Literal:
        return " \\| ".join(f"`{a}`" for a in args)
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        return " \\| ".join(_type_text(a) for a in args)
    if origin in (tuple, list):
        inner = [a for a in args if a is not Ellipsis]
        return f"list of {_type_text(inner[0])}" if inner else "list"
    if origin is dict:
        return "mapping"
    if dataclasses.is_dataclass(tp):
        return f"section ({tp.__name__})"
    if isinstance(tp, type):
        return {"str": "string", "Path": "path", "bool": "bool"}.get(tp.__name__, tp.__name__)
    return str(tp).replace("typing.", "")


def _default_text(f: dataclasses.Field) -> str:
    if f.default is not dataclasses.MISSING:
        value = f.default
    elif f.default_factory is not dataclasses.MISSING:
        value = f.default_factory()
    else:
        return "required"
    if dataclasses.is_dataclass(value):
        return "(its defaults)"
    return f"`{_yaml_text(value)}`"


def _yaml_text(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (tuple, list)):
        return "[" + ", ".join(_yaml_text(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_yaml_text(v)}" for k, v in value.items()) + "}"
    if isinstance(value, float):
        return repr(value)
    return str(value)


def _is_section(tp: Any) -> type | None:
    """The dataclass a field holds (also `X | None`), else None."""
    if dataclasses.is_dataclass(tp):
        return tp
    for a in typing.get_args(tp):
        if dataclasses.is_dataclass(a):
            return a
    return None


def _rows(cls: type, prefix: str = "") -> list[str]:
    """Table rows of `cls`'s fields, nested sections flattened with dotted keys."""
    hints = typing.get_type_hints(cls)
    comments, documented = _field_comments(cls), _docstring_fields(cls)
    rows, nested = [], []
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        tp = hints[f.name]
        section = _is_section(tp)
        meaning = comments.get(f.name) or documented.get(f.name) or _summary(section)
        key = f"{prefix}{f.name}"
        rows.append(f"| `{key}` | {_type_text(tp)} | {_default_text(f)} | {_cell(meaning)} |")
        if section is not None and section is not cls:
            listed = typing.get_origin(tp) in (tuple, list)  # a list of such sections
            nested.append((section, key + ("[]." if listed else ".")))
    for section, sub in nested:
        rows += _rows(section, sub)
    return rows


def _summary(section: type | None) -> str:
    """The first sentence of a section class's docstring ('' for a plain field)."""
    if section is None:
        return ""
    first = (inspect.getdoc(section) or "").split("\n\n")[0].replace("\n", " ")
    return first.split(". ")[0].rstrip(".")


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _section(title: str, cls: type, intro: str) -> list[str]:
    doc = inspect.getdoc(cls) or ""
    first = doc.split("\n\n")[0].replace("\n", " ")
    return [
        f"## {title}",
        "",
        intro,
        "",
        f"`{cls.__module__}.{cls.__name__}`: {first}",
        "",
        "| key | type | default | meaning |",
        "|---|---|---|---|",
        *_rows(cls),
        "",
    ]


def render() -> str:
    """The text of docs/configuration.md, from the dataclasses as they are now."""
    from analysis.settings import FitSettings
    from scaling.data.vqvae_config import VQVAETrainConfig
    from scaling.study.sweep.spec import SweepSpec
    from scaling.training.config import RunConfig

    lines = [
        "# Configuration reference",
        "",
        "<!-- Generated by scripts/figures/config_reference.py from the dataclasses' field",
        "     comments; do not edit by hand (tests/test_config_reference.py checks it). -->",
        "",
        "Every setting has one spelling: the key below. A sweep file writes run-config keys",
        "under `base`, `rules`, `overrides` and grid axes; `launch SWEEP --set KEY=VALUE`",
        "overrides one for every run; `fit RUNS --set KEY=VALUE` and `plan SWEEP --set",
        "KEY=VALUE` override a fit setting. Loading checks everything once and reports a",
        "mistake as `file:line: key.path: message` (a `--set` names itself).",
        "",
    ]
    lines += _section(
        "Run config",
        RunConfig,
        "What `base`, `rules`, `overrides` and grid axes of a sweep set; a run directory's "
        "`config.yaml`.",
    )
    lines += _section(
        "Sweep file",
        SweepSpec,
        "The top level of a sweep file (`sweeps/*.yaml`); `base`, `rules` and `overrides` "
        "hold run-config keys (above), `fit` the fit settings (below).",
    )
    lines += _section(
        "Fit settings",
        FitSettings,
        "A sweep's `fit:` section (copied to `<runs_dir>/fit.yaml`); `fit` and `plan` take "
        "`--set KEY=VALUE` over it.",
    )
    lines += _section(
        "VQVAE training",
        VQVAETrainConfig,
        "`scaling.train_vqvae`'s config file, and a sweep's `prepare.vqvae` options.",
    )
    return "\n".join(lines).rstrip("\n") + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--check", action="store_true", help="exit 1 when the file is out of date")
    args = p.parse_args(argv)
    text = render()
    if args.check:
        same = OUT.exists() and OUT.read_text() == text
        print(f"{OUT}: {'up to date' if same else 'OUT OF DATE: rerun without --check'}")
        return 0 if same else 1
    OUT.write_text(text)
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
