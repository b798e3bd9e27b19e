"""`var-scaling COMMAND`: the console entry point dispatches to `python -m scaling.COMMAND`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from scaling.core import commands

tomllib = pytest.importorskip("tomllib")  # Python >= 3.11

ROOT = Path(__file__).resolve().parents[2]


def test_pyproject_declares_the_console_command():
    """setup.sh's `pip install -e .` creates `.venv/bin/var-scaling` from this entry."""
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts == {"var-scaling": "scaling.core.commands:main"}


def test_every_command_is_an_entry_module():
    """Each name maps to a `scaling/<name>.py` of `python -m scaling.<name>`, and back."""
    entry = {p.stem for p in (ROOT / "scaling").glob("*.py")} - {"__init__", "__main__"}
    assert set(commands.COMMANDS) == entry


def test_dispatch_runs_the_command_with_its_arguments(capsys):
    """`var-scaling status --help` is `python -m scaling.status --help` (argparse exits 0)."""
    with pytest.raises(SystemExit) as e:
        commands.main(["status", "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage:") and "--watch" in out  # status's own arguments


def test_unknown_command_is_bad_input(capsys):
    assert commands.main(["stauts"]) == 2
    err = capsys.readouterr().err
    assert "unknown command 'stauts'" in err and "did you mean status" in err


def test_python_dash_m_scaling_is_the_same_command(tmp_path):
    """`python -m scaling fit MISSING` fails as `python -m scaling.fit MISSING` does (exit 2)."""
    missing = str(tmp_path / "nothing_here")
    a = subprocess.run(
        [sys.executable, "-m", "scaling", "fit", missing], capture_output=True, text=True, cwd=ROOT
    )
    b = subprocess.run(
        [sys.executable, "-m", "scaling.fit", missing], capture_output=True, text=True, cwd=ROOT
    )
    assert a.returncode == b.returncode == 2
    assert a.stderr == b.stderr
