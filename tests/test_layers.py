"""The folder tree is the data flow (docs/architecture.md), and this test holds it to that.

    contracts         the files that cross stages; stdlib and yaml only, nothing of the project
    var_core          the model; imports neither scaling nor analysis
    analysis          torch-free fits; imports neither torch, scaling nor var_core
    scaling.core      shared ground; imports nothing else of scaling
    scaling.data      images -> tokens; imports scaling.core only
    scaling.training  tokens -> runs; never imports scaling.study or scaling.tools
    scaling.study     runs -> table -> laws; never imports scaling.tools; its rooms run/ and laws/
    rest on sweep/ only
    scaling.<entry>   `python -m scaling.X`: thin, one import of the module that does the work

Every import statement counts, also one inside a function (a lazy import still ties two
layers together). A second check runs in fresh interpreters: the study's CLIs and loading
every sweep file in sweeps/ must not import torch (`scaling.status` answers in a moment).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from tests.paths import ROOT

PACKAGES = ("contracts", "var_core", "analysis", "scaling")

# importer prefix -> module prefixes it must not import
FORBIDDEN = {
    "contracts": ("scaling", "analysis", "var_core", "tests", "torch", "numpy", "pandas"),
    "var_core": ("scaling", "analysis", "contracts"),
    "analysis": ("torch", "scaling", "var_core"),
    "scaling.core": (
        "scaling.data",
        "scaling.training",
        "scaling.study",
        "scaling.tools",
        "analysis",
    ),
    "scaling.data": ("scaling.training", "scaling.study", "scaling.tools"),
    "scaling.training": ("scaling.study", "scaling.tools"),
    "scaling.study": ("scaling.tools",),
    "scaling.study.sweep": ("scaling.study.run", "scaling.study.laws"),
    "scaling.study.run": ("scaling.study.laws",),
    "scaling.study.laws": ("scaling.study.run",),
}
LAYERS = ("core", "data", "training", "study", "tools")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def all_modules() -> dict[str, Path]:
    return {module_name(p): p for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))}


def imports_of(name: str, path: Path) -> set[str]:
    """Every module an import statement of this file names (absolute, relative ones resolved)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                stem = ".".join(base + ([node.module] if node.module else []))
            else:
                stem = node.module or ""
            found.add(stem)
            found.update(f"{stem}.{a.name}" for a in node.names)  # `from scaling import data`
    return found


def _within(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def test_no_import_cycles():
    """No module imports itself through others (every import statement counts, also one under
    TYPE_CHECKING): a circle means two modules share one job, as the run config, its records
    and its schedule once did before the run's budget got its own module (training/budget.py)."""
    modules = all_modules()
    graph = {
        name: sorted(
            m
            for m in imports_of(name, path)
            if m in modules and m != name and modules[m].name != "__init__.py"
        )
        for name, path in modules.items()
    }
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    cycles: list[str] = []

    def visit(name: str, path: list[str]) -> None:
        state[name] = 1
        for dep in graph[name]:
            if state.get(dep) == 1:
                cycles.append(" -> ".join(path[path.index(dep) :] + [name, dep]))
            elif dep not in state:
                visit(dep, path + [name])
        state[name] = 2

    for name in graph:
        if name not in state:
            visit(name, [])
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def test_every_module_imports():
    """A module the layer rules cannot see because it does not import is a failure too."""
    code = "import importlib, sys\nfor m in sys.argv[1:]: importlib.import_module(m)"
    names = [n for n in all_modules() if not n.endswith("__main__")]
    subprocess.run([sys.executable, "-c", code, *names], cwd=ROOT, check=True)


@pytest.mark.parametrize("importer", sorted(FORBIDDEN))
def test_layer_never_imports_what_sits_above_it(importer):
    broken = []
    for name, path in all_modules().items():
        if not _within(name, importer):
            continue
        for imported in sorted(imports_of(name, path)):
            if any(_within(imported, banned) for banned in FORBIDDEN[importer]):
                broken.append(f"{path.relative_to(ROOT)} imports {imported}")
    assert not broken, "layer rule broken:\n" + "\n".join(broken)


def test_scaling_holds_only_layers_and_thin_entry_modules():
    """`scaling/X.py` is a `python -m scaling.X` command: a docstring, one import, main()."""
    folders = sorted(
        p.name for p in (ROOT / "scaling").iterdir() if p.is_dir() and (p / "__init__.py").exists()
    )
    assert folders == sorted(LAYERS)
    for path in sorted((ROOT / "scaling").glob("*.py")):
        if path.name == "__init__.py":
            continue
        tree = ast.parse(path.read_text())
        work = [
            n
            for n in tree.body
            if isinstance(n, (ast.FunctionDef, ast.ClassDef, ast.AsyncFunctionDef))
        ]
        imports = [
            n
            for n in tree.body
            if isinstance(n, ast.ImportFrom) and (n.module or "").startswith("scaling.")
        ]
        assert not work, (
            f"{path.name} defines {[n.name for n in work]}: entry modules only delegate"
        )
        assert len(imports) == 1 and [a.name for a in imports[0].names] == ["main"], path.name


TORCH_FREE = """
import sys
from pathlib import Path
import scaling.study, scaling.study.sweep.sweep, scaling.study.run.status, scaling.study.laws.fit
from scaling.study.sweep.sweep import load_sweep
for f in sorted(Path("sweeps").glob("*.yaml")):
    load_sweep(f)
loaded = sorted(m for m in sys.modules if m == "torch" or m.startswith("torch."))
assert not loaded, f"torch was imported: {loaded[:5]}"
"""


def test_study_and_sweep_files_load_without_torch():
    subprocess.run([sys.executable, "-c", TORCH_FREE], cwd=ROOT, check=True)


def test_contracts_use_only_the_standard_library_and_yaml():
    """contracts/ is read by every layer: only the standard library, PyYAML and itself."""
    broken = []
    for name, path in all_modules().items():
        if not _within(name, "contracts"):
            continue
        for imported in sorted(imports_of(name, path)):
            top = imported.split(".")[0]
            if top and top not in sys.stdlib_module_names and top not in ("yaml", "contracts"):
                broken.append(f"{path.relative_to(ROOT)} imports {imported}")
    assert not broken, "contracts/ imports more than the standard library and yaml:\n" + "\n".join(
        broken
    )
