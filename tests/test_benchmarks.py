"""Every script in benchmarks/ runs: each at its smallest size as a subprocess (rc 0 and the table
header it prints), so a reorganisation of the package cannot leave a benchmark behind. Scripts that
need something optional (trl, torch, ../shared/data) skip with the reason when it is absent.
benchmarks/device_suite.py and device_suite.sh are run by tests/test_device_suite.py (--dry_run)."""
import importlib.util
import os
import subprocess
import sys

import pytest

from tests.conftest import shared_data_dir

pytestmark = pytest.mark.slow  # a dozen subprocesses compiling JAX programs: minutes on 2 busy cores

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH = os.path.join(ROOT, "benchmarks")
ELSEWHERE = {"device_suite.py", "device_suite.sh"}  # tests/test_device_suite.py
LIBRARIES = {"_timing.py"}  # imported by the scripts, not run


@pytest.fixture(scope="module")
def tiny():
    """(model folder, toy data file): configs/tiny.py's random Qwen2, built once under $SDFT_JAX_CACHE."""
    from configs.tiny import materialize
    return materialize(0)


def run(args, header=(), timeout=600):
    env = {**os.environ, "TRL_EXPERIMENTAL_SILENCE": "1"}
    env.pop("XLA_FLAGS", None)  # one CPU device, as a benchmark run sees (memory.py sets its own)
    out = subprocess.run([sys.executable, *args] if args[0].endswith(".py") else args, cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=timeout)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    for h in header:
        assert h in out.stdout, (h, out.stdout[-3000:])
    return out.stdout


def needs(module):
    if importlib.util.find_spec(module) is None:
        pytest.skip(f"{module} is not installed")


def test_every_script_has_a_smoke_test_and_no_path_hacks():
    covered = {name[len("test_"):] for name in globals() if name.startswith("test_")}  # test_memory_py: memory.py
    for f in sorted(os.listdir(BENCH)):
        if f.endswith((".py", ".sh")) and f not in ELSEWHERE | LIBRARIES:
            assert f.replace(".", "_") in covered, f"benchmarks/{f}: no smoke test here"
        if f.endswith(".py"):
            assert "sys.path.insert" not in open(os.path.join(BENCH, f)).read(), f


def test_loss_memory_py():
    run(["benchmarks/loss_memory.py", "--batch", "1", "--length", "32", "--hidden", "32", "--vocab", "300",
         "--chunks", "0,16"], ["| variant | temp memory (GiB) |", "| chunked, 16 positions per chunk |"])


def test_memory_py():
    run(["benchmarks/memory.py", "--model", "tiny", "--devices", "2", "--prompts", "2", "--micro_batches", "1",
         "--lengths", "8,16,8", "--chunk", "8", "--teacher_model", "tiny"],
        ["external teacher tiny", "| program | arguments GiB/device |", "| fused SDFT step",
         "collectives inside the rollout's loops"])


def test_step_cost_py():
    run(["benchmarks/step_cost.py", "--model", "tiny", "--prompts", "1", "--student_prompt", "8",
         "--demonstration", "8", "--completion", "8", "--chunk_size", "8", "--repeats", "1", "--lora_rank", "2"],
        ["| phase | seconds | TFLOP/s | MFU |", "ratio SDFT/SFT", "| step | full fine-tuning s | LoRA s |"])


def test_precision_py():
    run(["benchmarks/precision.py", "--model", "tiny", "--steps", "2", "--prompts", "1", "--student_prompt", "8",
         "--demonstration", "8", "--completion", "4", "--variants", "1"],
        ["| variant | student moved | teacher moved |", "| bf16 params, fp32 EMA teacher"])


def test_sampler_py(tiny):
    needs("torch")  # the transformers reference, imported unconditionally
    run(["benchmarks/sampler.py", "--model", tiny[0], "--batches", "1", "--new_tokens", "4", "--prompt_len", "8",
         "--repeats", "1"], ["| batch | sdft_jax tok/s (decode_chunks=8) | transformers tok/s | ratio |"])


def test_quant_error_py(tiny):
    data = os.path.join(shared_data_dir(), "tooluse", "sdft_tooluse_eval.jsonl")
    run(["benchmarks/quant_error.py", "--model", tiny[0], "--data", data, "--rows", "2", "--max_tokens", "32"],
        ["| variant | mean KL(fp32", "| nf4 base, bfloat16 compute (QLoRA run) |"])


def test_data_pipeline_py(tiny):
    """The byte tokenizer of the tiny model; at L=2048 enough rows fit to time the batcher too."""
    run(["benchmarks/data_pipeline.py", "--tokenizer", tiny[0], "--data", shared_data_dir(), "--lengths", "2048"],
        ["| task | source | splits | L | kept |", "| medical | medical |", "batching (pad + bucket"])


def test_peer_trl_py():
    if importlib.util.find_spec("trl") is None:  # the script says so and exits 0
        out = run(["benchmarks/peer_trl.py", "--steps", "3", "--repeats", "1"])
        assert "trl is not installed" in out
        pytest.skip("trl is not installed (pip install trl==1.16.0)")
    run(["benchmarks/peer_trl.py", "--steps", "3", "--repeats", "1", "--prompts", "2", "--completion", "4"],
        ["| trainer | s / optimizer step (median) |", "| sdft_jax |"])


def test_loop_time_py():
    """The checkout against itself, 3 steps, one round."""
    run(["benchmarks/loop_time.py", "--before", ROOT, "--after", ROOT, "--steps", "3", "--rounds", "1",
         "--override=--config.eval.every=0", "--override=--config.log.samples_every=0",
         "--override=--config.checkpoint.every=3"], ["| checkout | s/step"])


def test_device_deps_py(tmp_path):
    """`install` from an empty wheelhouse: reads setup.py's ranges, checks this environment, installs
    nothing. (`make` downloads wheels: it needs the network.)"""
    (tmp_path / "wheels").mkdir()
    run(["benchmarks/device_deps.py", "install", str(tmp_path / "wheels"), str(tmp_path / "target")])
    assert not (tmp_path / "target").exists()


def test_aot_gpu_venv_sh():
    """Syntax only: the script builds a ~5.5 GB jax[cuda12] venv (network, Python 3.12)."""
    run(["bash", "-n", "benchmarks/aot_gpu_venv.sh"])
