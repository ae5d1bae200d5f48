"""`python -m sdft_jax.aot` compiles configs/tiny.py's fused step with the TPU compiler (libtpu, no TPU)
for a v5p-8 (fsdp over 4 chips, and fsdp 2 x tensor 2) and a v5p-16 (2 hosts): the memory analysis
is positive, below the chip's HBM and bounded by the state's size counted from the checkpoint file;
one compiled program holds the rollout's decode loop and the backward pass.

libtpu (~680 MB installed) is not in the test venv: `export SDFT_LIBTPU_DIR=$(bash .ci/libtpu.sh)`
installs it alone in a folder, and the command runs in a child Python with that folder on its path.
Without it (or libtpu in this Python) the test skips and says so. The command's one-line errors
need no TPU compiler and are checked in any case.
"""
import importlib.util
import json
import os
import re
import subprocess
import sys

import pytest
from safetensors import safe_open

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
V5P_HBM = 95 * 2 ** 30


def _tpu_env() -> dict:
    """The environment of a child Python that can import libtpu; skips when there is none."""
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}  # no forced CPU device count
    folder = os.environ.get("SDFT_LIBTPU_DIR", "")
    if folder:
        assert os.path.isdir(os.path.join(folder, "libtpu")), f"SDFT_LIBTPU_DIR={folder} holds no libtpu package"
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [folder, env.get("PYTHONPATH", "")]))
    elif importlib.util.find_spec("libtpu") is None:
        pytest.skip("no TPU compiler: libtpu is not in this Python and SDFT_LIBTPU_DIR is unset "
                    "(export SDFT_LIBTPU_DIR=$(bash .ci/libtpu.sh) installs it, ~210 MB download)")
    return env


def _aot(args, env, tmp_path):
    out = tmp_path / "aot"
    proc = subprocess.run([sys.executable, "-m", "sdft_jax.aot", "--config=configs/tiny.py", "--programs=step",
                           f"--out={out}", *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return json.loads((out / "aot.json").read_text()), proc.stdout


def _state_bytes() -> int:
    """fp32 params, EMA teacher and two AdamW moments, from the tiny checkpoint file itself."""
    from configs import tiny
    model, _ = tiny.materialize(0)
    with safe_open(os.path.join(model, "model.safetensors"), "np") as f:
        n = sum(_prod(f.get_slice(k).get_shape()) for k in f.keys())
    return 4 * 4 * n


def _prod(shape):
    out = 1
    for d in shape:
        out *= d
    return out


@pytest.mark.parametrize("topology, overrides, mesh, hosts", [
    ("v5p:2x2x1", [], {"data": 1, "fsdp": 4, "tensor": 1}, 1),
    ("v5p:2x2x1", ["--config.mesh.tensor=2"], {"data": 1, "fsdp": 2, "tensor": 2}, 1),
    ("v5p:2x2x2", [], {"data": 1, "fsdp": 8, "tensor": 1}, 2),
])
def test_tiny_fused_step_compiles_for_tpu(topology, overrides, mesh, hosts, tmp_path):
    env = _tpu_env()
    report, stdout = _aot([f"--topology={topology}", "--config.model.attention=xla", *overrides], env, tmp_path)
    assert report["versions"].startswith("jax ") and "libtpu 0." in report["versions"]
    assert (report["mesh"], report["hosts"], report["fits"]) == (mesh, hosts, True)
    (step,) = report["programs"]
    assert step["program"] == "SDFT step (rollout + update)"
    assert 0 < step["peak"] < V5P_HBM and step["temporaries"] > 0 and step["hbm"] == V5P_HBM
    # Each chip holds at least its even share of the state and at most a full replica (+ the inputs).
    state, chips = _state_bytes(), report["num_chips"]
    assert state / chips <= step["arguments"] <= state + 2 ** 20
    hlo = open(step["hlo"]).read()
    # The rollout's decode loop (its token sampling inside a while body, outside any derivative) and
    # the backward pass (transposed JVP) in this one compiled program.
    assert re.search(r'op_name="jit\(step\)/while/body/[^"]*_gumbel', hlo)
    assert 'op_name="jit(step)/transpose(jvp(' in hlo
    assert "memory check: yes" in stdout


def test_external_teacher_is_in_the_compiled_step(tmp_path):
    """teacher.kind=external (configs/tiny.py:teacher=external, a wider and deeper checkpoint):
    its shapes come from its own config.json and its weights are arguments of the fused step."""
    from configs import tiny
    env = _tpu_env()
    proc = subprocess.run([sys.executable, "-m", "sdft_jax.aot", "--config=configs/tiny.py:teacher=external",
                           "--programs=step", f"--out={tmp_path / 'aot'}", "--topology=v5p:2x2x1",
                           "--config.model.attention=xla"], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    report = json.loads((tmp_path / "aot" / "aot.json").read_text())
    assert "external teacher qwen2" in report["model"] and "teacher_wide" in report["model"]
    (step,) = report["programs"]

    def n(folder):
        with safe_open(os.path.join(folder, "model.safetensors"), "np") as f:
            return sum(_prod(f.get_slice(k).get_shape()) for k in f.keys())
    student, teacher = n(tiny.materialize(0)[0]), n(tiny.materialize_teacher(0))
    assert teacher > student  # so the bound below cannot hold without the teacher
    state = 4 * (3 * student + teacher)  # fp32: params, two AdamW moments, the frozen teacher (no EMA copy)
    assert state / report["num_chips"] <= step["arguments"] <= state + 2 ** 20 and step["fits"]


def test_splash_compiles_as_a_mosaic_kernel_for_tpu(tmp_path):
    """Splash attention inside the fused step is the Mosaic kernel on TPU (not interpret mode), per
    device in a shard_map: XLA cannot partition a Mosaic call over the 4 chips itself."""
    env = _tpu_env()
    report, _ = _aot(["--topology=v5p:2x2x1", "--config.model.attention=splash"], env, tmp_path)
    hlo = open(report["programs"][0]["hlo"]).read()
    assert "attention splash" in report["model"]
    assert "tpu_custom_call" in hlo


@pytest.mark.parametrize("args, message", [
    (["--topology=v9:2x2"], "--topology='v9:2x2': expected CHIP:SHAPE with CHIP one of v4, v5e, v5p, v6e, h100"),
    (["--topology=v5p:2x2x1", "--config.model.path=/nonexistent/Foo-3B"],
     "model.path='/nonexistent/Foo-3B': no config.json there and not one of the known checkpoints"),
])
def test_user_errors_are_one_line(args, message, tmp_path):
    proc = subprocess.run([sys.executable, "-m", "sdft_jax.aot", "--config=configs/tiny.py", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1].startswith(f"error: {message}"), proc.stderr[-2000:]


def test_performance_doc_tables_are_the_committed_aot_json(tmp_path):
    """docs/PERFORMANCE.md's ahead-of-time tables regenerate, unchanged, from docs/results/aot/ by the
    command each block names (no TPU compiler needed)."""
    import shutil
    from sdft_jax.aot import report as aot_report
    doc = tmp_path / "PERFORMANCE.md"
    shutil.copy(os.path.join(REPO, "docs", "PERFORMANCE.md"), doc)
    commands = re.findall(r"<!-- generated by `python -m sdft_jax.aot.report ([^`]+)`", doc.read_text())
    assert len(commands) == 2
    for command in commands:
        args = [os.path.join(REPO, a) if a.startswith("docs/results/") else a for a in command.split()]
        args[args.index("--update") + 1] = str(doc)
        assert aot_report.main(args) == 0
    assert doc.read_text() == open(os.path.join(REPO, "docs", "PERFORMANCE.md")).read()
