#!/usr/bin/env bash
# The device suite: one command a session with a lent GPU runs once, first (docs/PERFORMANCE.md, "GPU").
#
#   bash benchmarks/device_suite.sh --make_wheelhouse .whl     # here, with network: what the GPU image lacks
#   bash benchmarks/device_suite.sh --wheelhouse .whl          # there (run tool: carry [".whl"]), writes $OUT
#   bash benchmarks/device_suite.sh --dry_run                  # the same steps at toy shapes on CPU (CI)
#
# Steps, each under its own time limit so the whole run stays under ~7 minutes and a failing step
# does not stop the rest: install missing wheels (keeping the image's CUDA JAX), platform check,
# model and sampler parity tests vs transformers on the device (fp32 matmuls at 'highest' precision:
# the GPU's TF32 default is not fp32), `sdft_jax.main` on configs/tiny.py for 10 steps, then
# benchmarks/device_suite.py (decode roofline, train-step MFU, SDFT/SFT ratio, memory).
# Output: $OUT (default runs/device_suite): device_suite.md (table for docs/PERFORMANCE.md),
# device_suite.json, log.txt, and the exit status of each step at the end of the log.
set -uo pipefail
cd "$(dirname "$0")/.."
DRY=0 WHEELHOUSE="" OUTDIR=${OUT:-runs/device_suite}
while [ $# -gt 0 ]; do
  case $1 in
    --dry_run) DRY=1; shift ;;
    --wheelhouse) WHEELHOUSE=$2; shift 2 ;;
    --out) OUTDIR=$2; shift 2 ;;
    --make_wheelhouse) exec "${PYTHON:-python3}" benchmarks/device_deps.py make "$2" ;;
    *) echo "unknown argument $1 (see the header of $0)" >&2; exit 2 ;;
  esac
done
PY=${PYTHON:-python3}
mkdir -p "$OUTDIR"
OUTDIR=$(cd "$OUTDIR" && pwd)
LOG=$OUTDIR/log.txt
: >"$LOG"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
declare -a STATUS=()

# The limits budget the lent GPU's minutes; the dry run is CPU compiles on a possibly busy 2-core
# box (40-57 s per compile seen under load), so it gets 4x the time: it checks steps, not speed.
LIMIT_SCALE=1
[ $DRY = 1 ] && LIMIT_SCALE=4
step() {  # step NAME SECONDS CMD...: runs, logs, records the exit status, never aborts the suite
  local name=$1 limit=$(($2 * LIMIT_SCALE)); shift 2
  local t0=$SECONDS
  echo "=== $name (limit ${limit}s): $*" | tee -a "$LOG"
  timeout --signal=TERM --kill-after=10 "$limit" "$@" 2>&1 | tee -a "$LOG"
  local rc=${PIPESTATUS[0]}
  STATUS+=("$name rc=$rc $((SECONDS - t0))s")
  echo "=== $name: rc=$rc in $((SECONDS - t0))s" | tee -a "$LOG"
}

if [ -n "$WHEELHOUSE" ]; then
  step install 60 "$PY" benchmarks/device_deps.py install "$WHEELHOUSE" /tmp/sdft_site
  export PYTHONPATH="$PWD:/tmp/sdft_site${PYTHONPATH#"$PWD"}"
fi
step platform 60 bash -c "command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv;
  $PY -c 'import jax, flax, optax, orbax.checkpoint as o, transformers, torch; d = jax.devices()[0];
print(\"jax\", jax.__version__, \"flax\", flax.__version__, \"optax\", optax.__version__, \"orbax\", o.__version__,
      \"transformers\", transformers.__version__, \"torch\", torch.__version__); print(d.platform, d.device_kind, jax.device_count())'"
if [ $DRY = 1 ]; then
  PARITY=(-k "test_logits_match_transformers and qwen3 or test_greedy_matches_transformers_with_early_eos and qwen2")
  STEPS=2 SUITE_LIMIT=240
else
  PARITY=(-k "test_logits_match_transformers or test_greedy_matches_transformers or test_cached_decoding or test_left_padding or test_cudnn_model")
  STEPS=10 SUITE_LIMIT=270
fi
step parity 100 env JAX_DEFAULT_MATMUL_PRECISION=highest "$PY" -m pytest -q -p no:cacheprovider \
  tests/model/test_parity.py tests/test_sampler.py tests/model/test_attention.py "${PARITY[@]}"
rm -rf "$OUTDIR/tiny_run"
step tiny_main 90 "$PY" -m sdft_jax.main --config=configs/tiny.py --workdir "$OUTDIR/tiny_run" \
  --config.steps=$STEPS --config.checkpoint.every=$STEPS --config.eval.every=$STEPS --config.log.samples_every=0
rm -rf "$OUTDIR/tiny_run"
DRY_FLAG=()
[ $DRY = 1 ] && DRY_FLAG=(--dry_run)
step measure $SUITE_LIMIT "$PY" benchmarks/device_suite.py --out "$OUTDIR" "${DRY_FLAG[@]}"

printf '%s\n' "=== summary" "${STATUS[@]}" | tee -a "$LOG"
for s in "${STATUS[@]}"; do case $s in *" rc=0 "*) ;; *) exit 1 ;; esac; done
