#!/usr/bin/env bash
# Create/refresh the reference venv (.venv-ref at the repo root) used to write
# PyTorch fixture files with real torch. Idempotent: reruns are quick no-ops once
# everything pinned in requirements.txt is installed.
#
# Usage: scripts/reference/setup-venv.sh [VENV_DIR]
# Needs python3 (3.11 tested) and PyPI access. Disk: ~6 GB (see requirements.txt
# for why the nvidia-* wheels are needed). Not used by the Rust build or CI.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
venv="${1:-$root/.venv-ref}"
python="${PYTHON:-python3}"

if [[ ! -x "$venv/bin/python" ]]; then
    "$python" -m venv "$venv"
fi

# --no-deps: install exactly the pinned set, so pip never pulls triton or other
# CUDA extras that torch's metadata asks for.
"$venv/bin/python" -m pip install --disable-pip-version-check -q --no-deps \
    -r "$here/requirements.txt"

"$venv/bin/python" - <<'PY'
import torch, numpy, safetensors
t = torch.zeros(2)
assert t.tolist() == [0.0, 0.0]
print(f"ok: torch {torch.__version__}, numpy {numpy.__version__}, safetensors {safetensors.__version__}")
PY
