#!/usr/bin/env bash
# The TPU compiler for tests/test_aot.py on a machine without a TPU: libtpu alone (the version the
# active venv's jax pins for its [tpu] extra), in a folder of its own that the test puts on a child
# Python's PYTHONPATH; the test venv itself is not changed. Reused when already there. Prints the folder:
#   export SDFT_LIBTPU_DIR=$(bash .ci/libtpu.sh [DIR])
set -euo pipefail
spec=$(python -c 'import importlib.metadata as m
print(next(r.split(";")[0].replace(" ", "") for r in m.requires("jax") if r.startswith("libtpu") and "tpu" in r))')
dir=${1:-${SDFT_JAX_CACHE:-$HOME/.cache/sdft_jax}/libtpu/${spec//[^A-Za-z0-9.]/_}}
if [ ! -d "$dir/libtpu" ]; then
  python -m pip install -q --no-deps --target "$dir" "$spec" >&2
fi
echo "$dir"
