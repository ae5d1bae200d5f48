#!/usr/bin/env bash
# Create a TPU VM / pod slice, install sdft_jax on every worker, run the same command on all of them.
#
#   launch/tpu_vm.sh NAME ZONE ACCELERATOR CONFIG WORKDIR [--config.key=value ...]
#   e.g. launch/tpu_vm.sh sdft-v5p8 us-east5-a v5p-8 configs/qwen7b.py:task=science gs://BUCKET/runs/q7
#
# The `[tpu]` extra installs jax[tpu] within setup.py's JAX range (the newest the registry serves)
# and gcsfs. The workdir may be a gs:// path (orbax and etils write there directly); model.path may
# be a hub id (each worker downloads it once into its HF cache) or a gs:// folder (copied once into
# $SDFT_JAX_CACHE). jax.distributed is initialized automatically on a multi-host slice
# (TPU_WORKER_HOSTNAMES lists the workers).
set -euo pipefail
NAME=$1 ZONE=$2 ACCEL=$3 CONFIG=$4 WORKDIR=$5
shift 5
VERSION=${TPU_SOFTWARE_VERSION:-v2-alpha-tpuv5}
REPO=${SDFT_REPO:-https://github.com/YOUR_ORG/sdft_jax.git}
BRANCH=${SDFT_BRANCH:-main}

if ! gcloud compute tpus tpu-vm describe "$NAME" --zone "$ZONE" >/dev/null 2>&1; then
  gcloud compute tpus tpu-vm create "$NAME" --zone "$ZONE" --accelerator-type "$ACCEL" --version "$VERSION"
fi

run_all() { gcloud compute tpus tpu-vm ssh "$NAME" --zone "$ZONE" --worker=all --command "$1"; }

run_all "set -e; [ -d sdft_jax ] || git clone -b $BRANCH $REPO sdft_jax; cd sdft_jax && git pull -q && \
  python3 -m venv ~/venv && ~/venv/bin/pip install -q -U pip && ~/venv/bin/pip install -q -e '.[tpu]'"

# Every worker runs the same command; each reads only its slice of every batch.
run_all "cd sdft_jax && nohup ~/venv/bin/python -m sdft_jax.main --config=$CONFIG --workdir=$WORKDIR $* \
  > ~/sdft_jax.log 2>&1 &"
echo "started on all workers of $NAME; logs: gcloud compute tpus tpu-vm ssh $NAME --zone $ZONE --worker=0 --command 'tail -f ~/sdft_jax.log'"
