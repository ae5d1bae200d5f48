"""The training program end to end on configs/tiny.py: outputs, resume, preemption, configs."""
import glob
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from sdft_jax.programs.train import run
from tests import run_configs

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _tiny(**overrides):
    return run_configs.load("tiny", None, **overrides)


def _metrics(workdir):
    return [json.loads(l) for l in open(os.path.join(workdir, "metrics.jsonl"))]


def _final_params(workdir):
    from sdft_jax.model.safetensors_io import SafetensorsFolder
    f = SafetensorsFolder(os.path.join(workdir, "export"))
    return {k: np.array(f.view(k)) for k in f.keys()}


@pytest.mark.parametrize("method,phase_times", [("sdft", True), ("sft", False)])
def test_tiny_end_to_end(tmp_path, method, phase_times):
    workdir = str(tmp_path / method)
    out = run(_tiny(method=method, **{"log.phase_times": phase_times}), workdir)
    rows = _metrics(workdir)
    assert [r["step"] for r in rows] == [1, 2, 3, 4, 5, 6]
    assert all(np.isfinite(r["loss"]) for r in rows)
    assert all(r["time_step"] > 0 and r["tokens_per_s"] > 0 for r in rows)
    assert all(("time_generate" in r) == phase_times for r in rows)
    assert out["step"] == 6
    if method == "sdft":
        assert {"forward_kl", "reverse_kl", "logprob_gap", "teacher_student_distance"} <= set(rows[0])
    assert all(f"eval/{n}" in rows[i] for n in ("demo_nll", "teacher_nll") for i in (2, 5))
    assert rows[5]["eval/teacher_nll"] != rows[5]["eval/demo_nll"]  # another context, another NLL
    assert glob.glob(os.path.join(workdir, "tensorboard", "events.out.tfevents.*"))
    assert sorted(os.listdir(os.path.join(workdir, "checkpoints"))) == ["3", "6"]
    assert json.load(open(os.path.join(workdir, "config.json")))["method"] == method
    assert os.path.isfile(os.path.join(workdir, "samples.jsonl"))
    from tests.hf_fixtures import reload_hf
    reload_hf(os.path.join(workdir, "export"))  # transformers loads the export


def test_resume_is_exact(tmp_path):
    straight, split = str(tmp_path / "straight"), str(tmp_path / "split")
    run(_tiny(), straight)
    run(_tiny(steps=3), split)
    run(_tiny(), split)  # resumes from step 3
    a, b = _metrics(straight), _metrics(split)
    assert [r["step"] for r in b] == [1, 2, 3, 4, 5, 6]
    assert [r["loss"] for r in a] == [r["loss"] for r in b]  # bitwise on CPU
    pa, pb = _final_params(straight), _final_params(split)
    for k in pa:
        np.testing.assert_array_equal(pa[k], pb[k])


def _checkpointed_leaves(workdir, step):
    meta = json.load(open(os.path.join(workdir, "checkpoints", str(step), "state", "_METADATA")))
    return [eval(k) for k in meta["tree_metadata"]]  # noqa: S307 - orbax writes tuple reprs


def test_lora_trains_resumes_exactly_and_exports_merged_and_peft(tmp_path):
    """configs/tiny.py with model.lora.rank=8: resume == straight run, checkpoints hold adapters
    only, the base in the merged export moved only by scale * A B, and peft reads export_adapter."""
    straight, split = str(tmp_path / "straight"), str(tmp_path / "split")
    lora = {"model.lora.rank": 8, "model.lora.base_dtype": "float32", "optim.lr": 1e-2}
    run(_tiny(**lora), straight)
    run(_tiny(steps=3, **lora), split)
    run(_tiny(**lora), split)
    a, b = _metrics(straight), _metrics(split)
    assert [r["loss"] for r in a] == [r["loss"] for r in b]
    leaves = _checkpointed_leaves(split, 6)
    assert not [k for k in leaves if k[0] in ("params", "teacher_params") and "_lora_" not in k[-1]]
    from safetensors.numpy import load_file
    ad_a, ad_b = (load_file(os.path.join(w, "export_adapter", "adapter_model.safetensors")) for w in (straight, split))
    assert len(ad_a) == 2 * 7 * 2  # A and B, 7 projections, 2 layers
    for k in ad_a:
        np.testing.assert_array_equal(ad_a[k], ad_b[k])
    import peft
    import torch
    from tests.hf_fixtures import reload_hf
    base_dir = _tiny().model.path
    tuned = peft.PeftModel.from_pretrained(reload_hf(base_dir), os.path.join(straight, "export_adapter"))
    tokens = torch.arange(1, 20)[None]
    with torch.no_grad():
        merged = reload_hf(os.path.join(straight, "export"))(tokens).logits.numpy()
        np.testing.assert_allclose(tuned(tokens).logits.numpy(), merged, atol=1e-4)
        base = reload_hf(base_dir)(tokens).logits.numpy()
    assert np.abs(base - merged).max() > 1e-3  # training moved it


def _main_cmd(workdir, *overrides):
    return [sys.executable, "-m", "sdft_jax.main", f"--config={REPO}/configs/tiny.py", f"--workdir={workdir}",
            *overrides]


def _env():
    env = dict(os.environ)
    env.pop("XLA_FLAGS", None)  # one CPU device: faster compiles
    return env


def _wait_for_checkpoint(workdir, step, proc, timeout=300):
    deadline = time.time() + timeout
    folder = os.path.join(workdir, "checkpoints")
    while time.time() < deadline:
        # Any checkpoint at or after `step`: with keep=3 a fast run deletes `step` itself within ~6 steps.
        if os.path.isdir(folder) and any(s.isdigit() and int(s) >= step for s in os.listdir(folder)):
            return
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.1)
    raise AssertionError(f"no checkpoint {step} within {timeout}s")


@pytest.mark.slow
def test_sigkill_resumes_from_last_checkpoint_and_sigterm_saves(tmp_path):
    workdir = str(tmp_path / "w")
    overrides = ["--config.steps=40", "--config.checkpoint.every=2", "--config.eval.every=0"]
    proc = subprocess.Popen(_main_cmd(workdir, *overrides), env=_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    _wait_for_checkpoint(workdir, 4, proc)
    proc.kill()
    proc.wait()
    steps_before = sorted(int(s) for s in os.listdir(os.path.join(workdir, "checkpoints")) if s.isdigit())
    last = steps_before[-1]
    proc = subprocess.Popen(_main_cmd(workdir, *overrides), env=_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    _wait_for_checkpoint(workdir, last + 2, proc)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out
    assert f"resumed from checkpoint step {last}" in out
    assert "SIGTERM: saved checkpoint at step" in out
    saved = int(out.split("SIGTERM: saved checkpoint at step ")[1].split(";")[0])
    assert os.path.isdir(os.path.join(workdir, "checkpoints", str(saved)))
    steps = [r["step"] for r in _metrics(workdir)]
    assert steps[-1] == saved and saved > last


def test_unknown_override_key_is_rejected_before_compiling(tmp_path):
    out = subprocess.run(_main_cmd(str(tmp_path), "--config.loss.kindd=forward_kl"), env=_env(),
                         capture_output=True, text=True)
    assert out.returncode != 0 and "kindd" in out.stderr
    assert not os.path.exists(os.path.join(tmp_path, "metrics.jsonl"))


def _free_port():
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_processes_reproduce_one_process(tmp_path):
    """Two CPU processes (1 device each, jax.distributed + gloo) == one process with 2 devices."""
    overrides = ["--config.steps=3", "--config.checkpoint.every=3", "--config.eval.every=0"]
    single = str(tmp_path / "single")
    env = _env()
    env["XLA_FLAGS"] = "--xla_force_host_platform_device_count=2"
    subprocess.run(_main_cmd(single, *overrides), env=env, check=True, capture_output=True)
    multi = str(tmp_path / "multi")
    port = _free_port()
    procs = [subprocess.Popen(_main_cmd(multi, *overrides, f"--coordinator_address=127.0.0.1:{port}",
                                        "--num_processes=2", f"--process_id={i}"),
                              env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for i in range(2)]
    outs = [p.communicate(timeout=600)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), outs[0][-3000:] + outs[1][-3000:]
    assert "2 process(es)" in outs[0]
    a, b = _metrics(single), _metrics(multi)
    assert [r["step"] for r in b] == [1, 2, 3]
    np.testing.assert_allclose([r["loss"] for r in b], [r["loss"] for r in a], rtol=1e-5)
    pa, pb = _final_params(single), _final_params(multi)
    for k in pa:
        np.testing.assert_allclose(pb[k], pa[k], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("every", [1, 3])
def test_non_finite_loss_stops_naming_the_step_and_keeps_the_last_good_checkpoint(tmp_path, every):
    """every=3: most steps are checked one step late (the host reads metrics behind the device);
    still nothing at or after the bad step is saved or logged."""
    from sdft_jax.programs.train import TrainingDiverged
    workdir = str(tmp_path / "nan")
    # An absurd learning rate blows the weights up within a few steps.
    c = _tiny(steps=12, **{"optim.lr": 1e12, "optim.warmup_steps": 0, "optim.grad_clip": 1e30,
                           "checkpoint.every": every, "eval.every": 0, "log.samples_every": 0, "method": "sft"})
    with pytest.raises(TrainingDiverged, match=r"step (\d+): (loss|grad_norm|update_norm|param_norm) is (nan|inf)") as err:
        run(c, workdir)
    bad = int(str(err.value).split("step ")[1].split(":")[0])
    saved = sorted(int(s) for s in os.listdir(os.path.join(workdir, "checkpoints")) if s.isdigit())
    good = [s for s in range(1, bad) if s % every == 0]
    assert saved == good[-3:]  # keep=3; nothing at or after the bad step
    assert (f"The last good checkpoint is step {good[-1]}" if good else
            f"No checkpoint was saved before it (checkpoint.every={every})") in str(err.value)
    assert [r["step"] for r in _metrics(workdir)] == list(range(1, bad))
