#!/usr/bin/env bash
# One GPU host: install with CUDA JAX and run.
#
#   launch/gpu.sh CONFIG WORKDIR [--config.key=value ...]
#   e.g. launch/gpu.sh configs/qwen2_5_1_5b.py:task=science runs/q15 --config.model.path=/models/Qwen2.5-1.5B-Instruct
set -euo pipefail
CONFIG=$1 WORKDIR=$2
shift 2
cd "$(dirname "$0")/.."
if [ ! -x .venv-gpu/bin/python ]; then
  python3 -m venv .venv-gpu
  .venv-gpu/bin/pip install -q -U pip
  .venv-gpu/bin/pip install -q -e . 'jax[cuda12]==0.10.2'
fi
# Let XLA take most of the GPU memory up front (the rollout KV cache and the step share it).
export XLA_PYTHON_CLIENT_MEM_FRACTION=${XLA_PYTHON_CLIENT_MEM_FRACTION:-0.92}
exec .venv-gpu/bin/python -m sdft_jax.main --config="$CONFIG" --workdir="$WORKDIR" "$@"
