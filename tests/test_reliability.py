"""Faults a long run meets: divergence under SDFT, two runs in one workdir, a crash between
checkpoints (metrics recomputed), a corrupt latest checkpoint. docs/RELIABILITY.md lists them."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from sdft_jax.runtime.checkpoint import CheckpointError
from sdft_jax.runtime.run_config import ConfigChanged
from sdft_jax.programs.train import TrainingDiverged, run
from sdft_jax.runtime.workdir_lock import WorkdirBusy, WorkdirLock
from tests.test_train import _metrics, _tiny


def test_sdft_divergence_stops_before_saving_non_finite_weights(tmp_path):
    """lr 1e30 under SDFT: before, loss read 0.0 while everything else was NaN, the run ended 'done'
    and every kept checkpoint and the export were NaN."""
    workdir = str(tmp_path / "w")
    c = _tiny(steps=8, **{"optim.lr": 1e30, "optim.warmup_steps": 0, "checkpoint.every": 1, "eval.every": 0,
                          "log.samples_every": 0})
    with pytest.raises(TrainingDiverged, match=r"step (\d+): .*(nan|inf)") as err:
        run(c, workdir)
    bad = int(str(err.value).split("step ")[1].split(":")[0])
    rows = _metrics(workdir)
    assert [r["step"] for r in rows] == list(range(1, bad))
    for r in rows:  # each saved step's weights (param_norm is of the state that was saved)
        assert all(np.isfinite(r[k]) for k in ("loss", "grad_norm", "update_norm", "param_norm")), r
    saved = sorted(int(s) for s in os.listdir(os.path.join(workdir, "checkpoints")) if s.isdigit())
    assert all(s < bad for s in saved)
    assert not os.path.exists(os.path.join(workdir, "export"))


def _hold_lock(workdir):
    code = ("import sys, time; from sdft_jax.runtime.workdir_lock import WorkdirLock\n"
            f"l = WorkdirLock({workdir!r}).__enter__(); print('locked', flush=True); time.sleep(600)")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "locked"
    return proc


def test_second_run_in_a_workdir_fails_at_once_and_a_killed_runs_lock_is_taken_over(tmp_path):
    workdir = str(tmp_path / "w")
    os.makedirs(workdir)
    holder = _hold_lock(workdir)
    try:
        t0 = time.time()
        with pytest.raises(WorkdirBusy, match=f"in use by pid {holder.pid} on"):
            run(_tiny(), workdir)
        assert time.time() - t0 < 30  # before the model is loaded or anything compiles
        assert not os.path.exists(os.path.join(workdir, "config.json"))
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    said = []
    with WorkdirLock(workdir, said.append):
        assert json.load(open(os.path.join(workdir, ".lock")))["pid"] == os.getpid()
    assert f"pid {holder.pid}" in said[0] and "did not finish" in said[0]
    with WorkdirLock(workdir, said.append):  # released cleanly: nothing to take over
        pass
    assert len(said) == 1


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """configs/tiny.py to the end: checkpoints 3 and 6, metrics 1..6."""
    workdir = str(tmp_path_factory.mktemp("done") / "w")
    run(_tiny(**{"log.samples_every": 0}), workdir)
    return workdir


def _corrupt(step_dir, how):
    if how == "truncated_array":
        d = os.path.join(step_dir, "state", "ocdbt.process_0", "d")
        for name in os.listdir(d):
            with open(os.path.join(d, name), "r+b") as f:
                f.truncate(os.path.getsize(f.name) // 2)
    elif how == "missing_metadata":
        os.remove(os.path.join(step_dir, "state", "_METADATA"))
    else:  # an empty step folder
        shutil.rmtree(step_dir)
        os.makedirs(step_dir)


@pytest.mark.parametrize("how", ["truncated_array", "missing_metadata", "empty_folder"])
def test_corrupt_latest_checkpoint_falls_back_and_metrics_are_not_duplicated(finished_run, tmp_path, how):
    """The run crashed after step 6's metrics but its checkpoint is unreadable: resume from step 3,
    say which one was skipped, recompute 4..6 (bitwise the same) with each step logged once."""
    workdir = str(tmp_path / "w")
    shutil.copytree(finished_run, workdir)
    shutil.rmtree(os.path.join(workdir, "export"))
    before = _metrics(workdir)
    _corrupt(os.path.join(workdir, "checkpoints", "6"), how)
    out = run(_tiny(**{"log.samples_every": 0}), workdir)
    assert out["step"] == 6
    rows = _metrics(workdir)
    assert [r["step"] for r in rows] == [1, 2, 3, 4, 5, 6]
    assert [r["loss"] for r in rows] == [r["loss"] for r in before]
    assert os.path.isdir(os.path.join(workdir, "checkpoints.corrupt", "6"))
    assert sorted(os.listdir(os.path.join(workdir, "checkpoints"))) == ["3", "6"]


def test_no_readable_checkpoint_names_the_folder(finished_run, tmp_path):
    workdir = str(tmp_path / "w")
    shutil.copytree(finished_run, workdir)
    for step in ("3", "6"):
        _corrupt(os.path.join(workdir, "checkpoints", step), "missing_metadata")
    with pytest.raises(CheckpointError, match=r"no checkpoint in .*checkpoints reads cleanly: step 6 .*step 3"):
        run(_tiny(), workdir)
    assert sorted(os.listdir(os.path.join(workdir, "checkpoints"))) == ["3", "6"]  # nothing moved: no work lost


@pytest.mark.parametrize("args,message", [
    (["--config.optim.lrr=1"], "error: --config.optim.lrr: unknown config key (did you mean 'lr'?)"),
    (["--config.log.every=0"], "error: log.every: must be >= 1"),  # before: ZeroDivisionError after compiling
    (["--config=configs/nope.py"], "error: --config=configs/nope.py: cannot load the config file"),
    (["--workdir={file}/sub"], "error: --workdir {file}/sub: cannot write there (Not a directory)"),
])
def test_user_errors_are_one_line(tmp_path, args, message):
    from tests.test_train import REPO, _env
    afile = tmp_path / "afile"
    afile.write_text("")
    args = [a.format(file=afile) for a in args]
    cmd = [sys.executable, "-m", "sdft_jax.main", "--config=configs/tiny.py", f"--workdir={tmp_path / 'w'}", *args]
    out = subprocess.run(cmd, cwd=REPO, env=_env(), capture_output=True, text=True, timeout=300)
    assert out.returncode != 0
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(message.format(file=afile)), out.stderr[-3000:]


def test_sigterm_during_start_up_exits_0(tmp_path):
    """Before: the process died with -15 (the README promises exit 0 on SIGTERM)."""
    from tests.test_train import _env, _main_cmd
    proc = subprocess.Popen(_main_cmd(str(tmp_path / "w")), env=_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    for line in proc.stdout:  # the mesh line: model loading, data and compilation are still ahead
        if line.startswith("[sdft_jax] mesh"):
            break
    proc.send_signal(signal.SIGTERM)
    out = proc.communicate(timeout=120)[0]
    assert proc.returncode == 0, out[-3000:]
    assert "SIGTERM" in out


def test_a_run_that_cannot_fit_stops_before_the_first_step(tmp_path, monkeypatch):
    """Before: OOM-killed (SIGKILL, no message). The compiled step's memory analysis (the fused
    program: rollout + update) is compared with the free memory; here the machine reports 1 KiB free."""
    from sdft_jax.runtime import memory_check
    monkeypatch.setattr(memory_check, "free_bytes", lambda: (2 ** 10, "host memory (MemAvailable)"))
    workdir = str(tmp_path / "w")
    with pytest.raises(memory_check.MemoryPlanError,
                       match=r"the SDFT step \(rollout \+ update\) needs [\d.]+ MiB beyond its [\d.]+ MiB of arguments, but only 0.0 MiB of "
                             r"host memory \(MemAvailable\) is free: lower it with model.remat=full"):
        run(_tiny(), workdir)
    assert not os.path.exists(os.path.join(workdir, "metrics.jsonl")) or not _metrics(workdir)


def test_memory_check_reads_the_compiled_programs_needs():
    import jax
    import jax.numpy as jnp

    from sdft_jax.runtime import memory_check
    f = jax.jit(lambda x: jnp.outer(x, x).sum(0))  # a 4096 x 4096 fp32 temporary: 64 MiB
    x = jnp.ones(4096)
    extra, resident = memory_check.new_bytes(f.lower(x).compile())
    assert resident == 4096 * 4 and extra >= 4096 * 4
    memory_check.check_fits("outer", f, x, free=(2 ** 34, "test memory"))  # 16 GiB: fits
    with pytest.raises(memory_check.MemoryPlanError, match="the outer needs"):
        memory_check.check_fits("outer", f, x, free=(extra // 2, "test memory"))
    free = memory_check.free_bytes()
    assert free is not None and free[0] > 0  # Linux CPU: MemAvailable


def test_divergence_before_any_checkpoint_says_so(tmp_path):
    """Before: "the last good checkpoint is step None"."""
    c = _tiny(steps=4, **{"optim.lr": 1e30, "checkpoint.every": 100, "eval.every": 0, "log.samples_every": 0})
    with pytest.raises(TrainingDiverged, match=r"stopping without saving. No checkpoint was saved before it "
                                                r"\(checkpoint.every=100\)$"):
        run(c, str(tmp_path / "w"))


@pytest.mark.parametrize("changes,named", [
    ({"optim.lr": 1e-4}, "optim.lr: 0.001 -> 0.0001"),
    ({"method": "sft", "loss.skip_first_tokens": 2}, "loss.skip_first_tokens: 3 -> 2, method: sdft -> sft"),
    ({"model.lora.rank": 4}, "model.lora.rank: 0 -> 4"),
])
def test_resume_with_settings_that_change_the_run_stops_naming_each_key(finished_run, tmp_path, changes, named):
    """Before: rc 0 and a note naming no key; config.json was overwritten (also by a resume that then
    failed in orbax: LoRA rank)."""
    workdir = str(tmp_path / "w")
    shutil.copytree(finished_run, workdir)
    original = open(os.path.join(workdir, "config.json")).read()
    t0 = time.time()
    with pytest.raises(ConfigChanged) as err:
        run(_tiny(steps=8, **{"log.samples_every": 0}, **changes), workdir)
    assert time.time() - t0 < 20  # before the model loads or anything compiles
    message = str(err.value)
    assert "\n" not in message and message.startswith(f"{workdir}/config.json: this workdir's run (checkpoint step 6) "
                                                       f"has other settings: {named}; resuming would mix two runs")
    assert message.endswith(f"--config.resume.allow_changes={','.join(sorted(changes))} to continue it with them")
    assert "steps" not in message.split("settings: ")[1].split(";")[0]  # 6 -> 8 is allowed
    assert open(os.path.join(workdir, "config.json")).read() == original
    assert [r["step"] for r in _metrics(workdir)] == [1, 2, 3, 4, 5, 6]


def test_resume_with_allowed_changes_keeps_the_first_config_and_records_the_new_one(finished_run, tmp_path, capsys):
    workdir = str(tmp_path / "w")
    shutil.copytree(finished_run, workdir)
    original = open(os.path.join(workdir, "config.json")).read()
    run(_tiny(steps=7, **{"log.samples_every": 0, "optim.lr": 5e-4, "eval.every": 0,
                          "resume.allow_changes": "optim.lr"}), workdir)
    out = capsys.readouterr().out
    assert "note: resumed with changed settings (eval.every: 3 -> 0, optim.lr: 0.001 -> 0.0005, steps: 6 -> 7); " in out
    assert open(os.path.join(workdir, "config.json")).read() == original
    resumed = json.load(open(os.path.join(workdir, "config.resume-1.json")))
    assert (resumed["optim"]["lr"], resumed["steps"]) == (5e-4, 7)
    assert [r["step"] for r in _metrics(workdir)] == [1, 2, 3, 4, 5, 6, 7]
    run(_tiny(steps=7, **{"log.samples_every": 0, "optim.lr": 5e-4, "eval.every": 0,
                          "resume.allow_changes": "optim.lr"}), workdir)  # the same again: compared with resume-1
    assert not os.path.exists(os.path.join(workdir, "config.resume-2.json"))


def test_steps_below_the_checkpoint_is_one_line_and_exports_nothing(finished_run, tmp_path):
    """Before: "done: 3 steps" and the step-6 model exported again."""
    workdir = str(tmp_path / "w")
    shutil.copytree(finished_run, workdir)
    shutil.rmtree(os.path.join(workdir, "export"))
    with pytest.raises(ConfigChanged, match=r"^steps: 3 is below the step of the checkpoint in .*/checkpoints \(6\); "
                                            r"this run would export that step-6 model"):
        run(_tiny(steps=3, **{"log.samples_every": 0}), workdir)
    assert not os.path.exists(os.path.join(workdir, "export"))


def test_sigint_saves_and_exits_0_in_one_line(tmp_path):
    """Before: a 63-line KeyboardInterrupt traceback, rc -2, every step since the last checkpoint lost."""
    from tests.test_train import _env, _main_cmd
    workdir = str(tmp_path / "w")
    proc = subprocess.Popen(_main_cmd(workdir, "--config.steps=200", "--config.checkpoint.every=1000",
                                      "--config.eval.every=0", "--config.log.samples_every=0"),
                            env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    for line in proc.stdout:  # the progress line of step 2: training is under way, nothing saved yet
        if line.startswith("[") and " 2/200 " in line:
            break
    proc.send_signal(signal.SIGINT)
    out = proc.communicate(timeout=120)[0]
    assert proc.returncode == 0, out[-3000:]
    assert "Traceback" not in out and "KeyboardInterrupt" not in out
    saved = [line for line in out.splitlines() if "SIGINT" in line]
    assert len(saved) == 1 and saved[0].startswith("[sdft_jax] SIGINT: saved checkpoint at step "), out[-3000:]
    step = int(saved[0].split("step ")[1].split(";")[0])
    assert step >= 2 and os.path.isdir(os.path.join(workdir, "checkpoints", str(step)))
    assert _metrics(workdir)[-1]["step"] == step


def test_steps_on_which_no_token_carries_loss_stop_the_run(tmp_path):
    """A model whose every token is a stop token (generation_config.json lists them all): each rollout
    ends at its first token, within loss.skip_first_tokens. Before: loss_tokens 0 and a zero update on
    every step, the run ended "done" and exported the base."""
    from sdft_jax.programs.train import NothingToTrain
    model = str(tmp_path / "model")
    shutil.copytree(_tiny().model.path, model)
    vocab = json.load(open(os.path.join(model, "config.json")))["vocab_size"]
    with open(os.path.join(model, "generation_config.json"), "w") as f:
        json.dump({"eos_token_id": list(range(vocab)), "pad_token_id": 256}, f)
    workdir = str(tmp_path / "w")
    with pytest.raises(NothingToTrain, match=r"^steps 1-5: no completion token carried loss \(loss_tokens 0\)"):
        run(_tiny(**{"model.path": model, "eval.every": 0, "log.samples_every": 0}), workdir)
    assert [r["loss_tokens"] for r in _metrics(workdir)] == [0.0] * 4
    assert not os.path.exists(os.path.join(workdir, "export"))
