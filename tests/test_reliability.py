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

from sdft_jax.checkpoint import CheckpointError
from sdft_jax.train import TrainingDiverged, run
from sdft_jax.workdir_lock import WorkdirBusy, WorkdirLock
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
    code = ("import sys, time; from sdft_jax.workdir_lock import WorkdirLock\n"
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
    from sdft_jax import memory_check
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

    from sdft_jax import memory_check
    f = jax.jit(lambda x: jnp.outer(x, x).sum(0))  # a 4096 x 4096 fp32 temporary: 64 MiB
    x = jnp.ones(4096)
    extra, resident = memory_check.new_bytes(f.lower(x).compile())
    assert resident == 4096 * 4 and extra >= 4096 * 4
    memory_check.check_fits("outer", f, x, free=(2 ** 34, "test memory"))  # 16 GiB: fits
    with pytest.raises(memory_check.MemoryPlanError, match="the outer needs"):
        memory_check.check_fits("outer", f, x, free=(extra // 2, "test memory"))
    free = memory_check.free_bytes()
    assert free is not None and free[0] > 0  # Linux CPU: MemAvailable
