#!/usr/bin/env bash
# One GPU host: install (keeping a preinstalled CUDA JAX) and run.
#
#   launch/gpu.sh [--wheelhouse DIR] CONFIG WORKDIR [--config.key=value ...]
#   e.g. launch/gpu.sh configs/qwen2_5_1_5b.py:task=science runs/q15 --config.model.path=/models/Qwen2.5-1.5B-Instruct
#
# The python that runs is $PYTHON (default python3). If it already imports a JAX that sees a GPU
# (a CUDA image), the project is installed into it next to that JAX: setup.py's ranges admit
# JAX 0.10.x-0.12.x, so pip keeps the CUDA build. Otherwise a venv .venv-gpu gets the `[gpu]` extra
# (jax[cuda12] in the same range).
# --wheelhouse DIR installs offline from DIR (pip --no-index --find-links DIR); build it on a
# machine with network with `python benchmarks/device_deps.py make DIR` (adds what the usual GPU
# image lacks) plus, for a host without JAX, `pip download 'jax[cuda12]' -d DIR`.
set -euo pipefail
WHEELHOUSE=""
if [ "${1:-}" = "--wheelhouse" ]; then WHEELHOUSE=$(cd "$2" && pwd); shift 2; fi
CONFIG=$1 WORKDIR=$2
shift 2
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
PIP_ARGS=(-q)
[ -n "$WHEELHOUSE" ] && PIP_ARGS+=(--no-index --find-links "$WHEELHOUSE")

has_gpu_jax() { "$1" -c 'import jax, sys; sys.exit(0 if jax.default_backend() == "gpu" else 1)' 2>/dev/null; }

if has_gpu_jax "$PY"; then
  echo "[gpu.sh] keeping the preinstalled JAX: $("$PY" -c 'import jax; print(jax.__version__, jax.devices()[0].device_kind)')"
  "$PY" -c 'import importlib.metadata as m; m.version("sdft_jax")' 2>/dev/null || "$PY" -m pip install "${PIP_ARGS[@]}" --no-build-isolation -e .
else
  if [ ! -x .venv-gpu/bin/python ]; then
    "$PY" -m venv .venv-gpu
    .venv-gpu/bin/pip install "${PIP_ARGS[@]}" -e '.[gpu]'
  fi
  PY=.venv-gpu/bin/python
fi
"$PY" -c 'import jax; d = jax.devices()[0]; print(f"[gpu.sh] JAX {jax.__version__} on {d.platform}: {d.device_kind}")'
# Let XLA take most of the GPU memory up front (the rollout KV cache and the step share it).
export XLA_PYTHON_CLIENT_MEM_FRACTION=${XLA_PYTHON_CLIENT_MEM_FRACTION:-0.92}
exec "$PY" -m sdft_jax.main --config="$CONFIG" --workdir="$WORKDIR" "$@"
