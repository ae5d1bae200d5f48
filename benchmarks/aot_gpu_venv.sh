#!/usr/bin/env bash
# A venv for `python -m sdft_jax.aot --topology=h100:1x1x1|h200:1x1x1|l4:1x1x1` on a machine without a
# GPU: Python 3.12, jax[cuda12] (the CUDA compiler plugin and NVIDIA wheels, ~5.5 GB installed) and
# this project. XLA compiles for the GPU described in sdft_jax/aot/targets.py; nothing runs on one.
#   bash benchmarks/aot_gpu_venv.sh [VENV]   (default ~/.venvs/sdft_aot_gpu; reused when already there)
#   VENV/bin/python -m sdft_jax.aot --config=configs/qwen7b_lora_gpu.py --topology=h100:1x1x1
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${1:-$HOME/.venvs/sdft_aot_gpu}
py=${PY312:-}
if [ -z "$py" ]; then  # the first Python 3.12 that runs (a pyenv shim may exist and fail)
  for c in python3.12 /root/.pyenv/versions/3.12.*/bin/python; do
    if "$c" -c 'import sys; assert sys.version_info[:2] == (3, 12)' 2>/dev/null; then py=$c; break; fi
  done
fi
[ -n "$py" ] || { echo "error: no Python 3.12 (set PY312=...)" >&2; exit 1; }
jax_version=${JAX_VERSION:-0.11.2}  # the GPU image's JAX (constraints-jax011.txt)
if [ ! -x "$venv/bin/python" ]; then
  "$py" -m venv "$venv"
fi
"$venv/bin/python" -m pip install -q -e . "jax[cuda12]==$jax_version"
"$venv/bin/python" -c 'import jax, importlib.metadata as m; print("jax", jax.__version__, "cuda plugin", m.version("jax-cuda12-plugin"))'
