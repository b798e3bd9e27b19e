#!/usr/bin/env bash
# One-time set-up: a virtual environment in .venv with the CPU build of torch and this
# package (editable) with its test and notebook extras. Safe to re-run; fast when done.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
stamp=.venv/.setup-done
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  # torch first and pinned: a bare "torch" may pull a multi-GB CUDA build.
  .venv/bin/pip install --quiet --upgrade pip
  .venv/bin/pip install --quiet "torch==${TORCH_VERSION:-2.13.0}"
  .venv/bin/pip install --quiet -e ".[test,notebooks]"
  touch "$stamp"
fi
echo "set-up done: $(.venv/bin/python -c 'import torch; print("torch", torch.__version__)')"
