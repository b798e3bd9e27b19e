#!/usr/bin/env bash
# One-time set-up: a virtual environment in .venv with the CPU build of torch and this
# package (editable) with its test and notebook extras. Safe to re-run; fast when done.
# It says what it is doing at each step (pip lists each package as it collects it).
set -euo pipefail  # pipefail: a failing pip fails the set-up, whatever the filter after it
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
TORCH="torch==${TORCH_VERSION:-2.13.0}"
if [ ! -x .venv/bin/python ]; then
  echo "[setup 1/4] creating the virtual environment .venv ($("$PY" --version))"
  "$PY" -m venv .venv
fi
stamp=.venv/.setup-done
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  echo "[setup 2/4] upgrading pip"
  .venv/bin/pip install --quiet --upgrade pip
  # torch first and pinned: a bare "torch" may pull a multi-GB CUDA build.
  echo "[setup 3/4] installing $TORCH (CPU build, about 200 MB: the longest step)"
  .venv/bin/pip install --progress-bar off "$TORCH" 2>&1 | { grep -E '^(Collecting|Successfully|ERROR)' || true; }
  echo "[setup 4/4] installing this package (editable) with the test and notebook extras:"
  echo "            numpy scipy pandas matplotlib pyyaml tqdm submitit, pytest, jupyter/nbclient ..."
  .venv/bin/pip install --progress-bar off -e ".[test,notebooks]" 2>&1 | { grep -E '^(Collecting|Successfully|ERROR)' || true; }
  touch "$stamp"
fi
echo "set-up done: $(.venv/bin/python -c 'import torch; print("torch", torch.__version__)')"
