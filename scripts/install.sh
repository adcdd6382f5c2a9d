#!/usr/bin/env bash
# Create .venv and install pixseek into it (idempotent). Used by quickstart.sh and test.sh.
#   EXTRAS=dev bash scripts/install.sh     # with the test tools
# torch is installed first and pinned: an unpinned torch makes pip pull a multi-GB CUDA build.
# With an NVIDIA GPU (nvidia-smi works) the default torch build and faiss-gpu are used instead.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}
extras=${EXTRAS:-}

[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
pip=(.venv/bin/python -m pip install --quiet --disable-pip-version-check)
if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
    extras=${extras:+$extras,}gpu
    .venv/bin/python -c "import torch" 2>/dev/null || "${pip[@]}" torch
else
    .venv/bin/python -c "import torch" 2>/dev/null || "${pip[@]}" "$TORCH_SPEC"
fi
"${pip[@]}" -e ".${extras:+[$extras]}"
echo "pixseek installed in $(pwd)/.venv (extras: ${extras:-none})" >&2
