"""sdft_jax.sweep: a grid of tiny runs, one folder each, a summary, resumable; bad axes fail at once."""
import json
import os
import subprocess
import sys

import pytest

from sdft_jax.programs.registry import run_program
from sdft_jax.programs.sweep import SweepError, grid, parse_axis, point_name, run_sweep
from tests.test_train import REPO, _env, _metrics, _tiny


def test_axes_are_typed_like_the_config_and_bad_ones_are_named():
    c = _tiny()
    assert parse_axis("optim.lr=[1e-3, 3e-3]", c) == ("optim.lr", [1e-3, 3e-3])
    assert parse_axis("steps=[2,4]", c) == ("steps", [2, 4])
    assert parse_axis("method=[sdft,sft]", c) == ("method", ["sdft", "sft"])
    assert parse_axis("data.shuffle=[true,false]", c) == ("data.shuffle", [True, False])
    for text, message in (("optim.lrr=[1]", "optim.lrr: not a key"), ("steps=[2.5]", "not an integer"),
                          ("optim.lr=[fast]", "not a number"), ("optim.lr=1e-3", "non-empty list"),
                          ("method=[sdft,sdft]", "repeated values")):
        with pytest.raises(SweepError, match=message):
            parse_axis(text, c)
    points = grid([("a", [1, 2]), ("b", ["x", "y"])])
    assert [point_name(p) for p in points] == ["a=1,b=x", "a=1,b=y", "a=2,b=x", "a=2,b=y"]


def test_bad_value_at_any_point_fails_before_the_first_run(tmp_path):
    with pytest.raises(SweepError, match=r"sweep point optim.lr=-1.0: optim.lr: must be > 0"):
        run_sweep(_tiny(), str(tmp_path), ["optim.lr=[1e-3,-1]"], run_program)
    assert not os.path.exists(tmp_path / "optim.lr=0.001")


def test_grid_runs_each_point_in_its_folder_and_a_rerun_skips_them(tmp_path):
    base = _tiny(steps=2, **{"optim.warmup_steps": 0, "checkpoint.every": 2, "eval.every": 0, "log.samples_every": 0})
    rows = run_sweep(base, str(tmp_path), ["optim.lr=[1e-3,1e-2]", "method=[sdft,sft]"], run_program, say=lambda m: None)
    names = ["optim.lr=0.001,method=sdft", "optim.lr=0.001,method=sft", "optim.lr=0.01,method=sdft",
             "optim.lr=0.01,method=sft"]
    assert [point_name(r["point"]) for r in rows] == names
    for name in names:  # each point is a full run with its own config
        config = json.load(open(tmp_path / name / "config.json"))
        assert (config["optim"]["lr"], config["method"]) == (float(name.split(",")[0].split("=")[1]),
                                                             name.split("=")[-1])
        assert [r["step"] for r in _metrics(str(tmp_path / name))] == [1, 2]
    losses = [r["metrics"]["loss"] for r in rows]
    assert len(set(losses)) == 4  # the points differ
    table = (tmp_path / "summary.md").read_text().splitlines()
    assert table[0].startswith("| optim.lr | method | step | loss") and len(table) == 2 + 4
    messages = []
    again = run_sweep(base, str(tmp_path), ["optim.lr=[1e-3,1e-2]", "method=[sdft,sft]"], run_program, say=messages.append)
    assert [r["metrics"] for r in again] == [r["metrics"] for r in rows]
    assert sum("skipped" in m for m in messages) == 4


def test_command_line_reports_a_bad_sweep_in_one_line(tmp_path):
    cmd = [sys.executable, "-m", "sdft_jax.sweep", f"--config={REPO}/configs/tiny.py", f"--workdir={tmp_path}",
           "--sweep=optim.lrr=[1e-3]"]
    out = subprocess.run(cmd, env=_env(), capture_output=True, text=True, cwd=REPO)
    assert out.returncode == 1 and out.stderr.strip() == "error: --sweep optim.lrr: not a key of the config"


def _sweep_cmd(workdir, *extra):
    return [sys.executable, "-m", "sdft_jax.sweep", f"--config={REPO}/configs/tiny.py", f"--workdir={workdir}",
            "--sweep=optim.lr=[1e30,1e-4]", *extra]


@pytest.fixture(scope="module")
def bad_rate_sweep(tmp_path_factory):
    """The issue's command: point 1 diverges, point 2 trains. Before: rc 1 after point 1, point 2 never
    ran, no summary."""
    workdir = str(tmp_path_factory.mktemp("sweep") / "w")
    out = subprocess.run(_sweep_cmd(workdir), env=_env(), capture_output=True, text=True, cwd=REPO, timeout=600)
    return workdir, out


def test_a_diverging_point_is_recorded_and_the_sweep_goes_on(bad_rate_sweep):
    workdir, out = bad_rate_sweep
    assert out.returncode == 0, out.stderr[-3000:]
    rows = json.load(open(os.path.join(workdir, "summary.json")))
    assert [point_name(r["point"]) for r in rows] == ["optim.lr=1e+30", "optim.lr=0.0001"]
    assert rows[0]["status"].startswith("diverged at step ") and rows[1]["status"] == "done"
    bad = int(rows[0]["status"].split()[-1])
    assert [r["step"] for r in _metrics(os.path.join(workdir, "optim.lr=1e+30"))] == list(range(1, bad))
    assert rows[1]["metrics"]["step"] == 6 and rows[1]["metrics"]["loss"] == _metrics(
        os.path.join(workdir, "optim.lr=0.0001"))[-1]["loss"]
    table = open(os.path.join(workdir, "summary.md")).read()
    assert f"| diverged at step {bad} |" in table and "| done |" in table
    # A rerun does not run the diverged point again (it would diverge again) nor the done one.
    again = subprocess.run(_sweep_cmd(workdir), env=_env(), capture_output=True, text=True, cwd=REPO, timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"optim.lr=1e+30: diverged at step {bad} before, skipped" in again.stdout
    assert "optim.lr=0.0001: done before, skipped" in again.stdout


def test_a_failed_point_is_recorded_retried_only_when_asked_and_the_sweep_exits_1(tmp_path):
    """A point that fails (here its data path does not exist) is a row `failed: <one line>`; the
    others still run; the exit status says so; a rerun retries it only with --retry_failed."""
    base = _tiny(steps=2, **{"checkpoint.every": 2, "eval.every": 0, "log.samples_every": 0})
    said = []
    rows = run_sweep(base, str(tmp_path), [f"data.path=[{tmp_path}/nope.jsonl,{base.data.path}]"], run_program, say=said.append)
    assert rows[0]["status"].startswith("failed: data path") and "nope.jsonl" in rows[0]["status"]
    assert rows[1]["status"] == "done" and rows[1]["metrics"]["step"] == 2
    assert "1 failed" in said[-1]
    said.clear()
    run_sweep(base, str(tmp_path), [f"data.path=[{tmp_path}/nope.jsonl,{base.data.path}]"], run_program, say=said.append)
    assert any("failed: data path" in m and "before, skipped (--retry_failed" in m for m in said)
    said.clear()
    rows = run_sweep(base, str(tmp_path), [f"data.path=[{tmp_path}/nope.jsonl,{base.data.path}]"], run_program, say=said.append,
                     retry_failed=True)
    assert rows[0]["status"].startswith("failed: data path") and not any("nope.jsonl: failed" in m and "skipped" in m
                                                                          for m in said)


def test_changed_base_overrides_are_refused_naming_the_keys_or_run_in_new_folders(bad_rate_sweep, tmp_path):
    """Before: a rerun with --config.method=sft skipped both points as done and reported the SDFT results."""
    import shutil
    workdir = str(tmp_path / "w")
    shutil.copytree(bad_rate_sweep[0], workdir)
    out = subprocess.run(_sweep_cmd(workdir, "--config.method=sft", "--config.steps=6"), env=_env(),
                         capture_output=True, text=True, cwd=REPO, timeout=300)
    assert out.returncode == 1
    assert out.stderr.strip().splitlines() == [
        "error: sweep points ran before with other settings: optim.lr=1e+30 (method: sdft -> sft); "
        "optim.lr=0.0001 (method: sdft -> sft). Rerun with --rerun_changed to run them in new folders, or use "
        "another --workdir"]
    base = _tiny(method="sft", **{"log.samples_every": 0})
    rows = run_sweep(base, workdir, ["optim.lr=[1e-4]"], run_program, say=lambda m: None, rerun_changed=True)
    folder = rows[0]["folder"]
    assert folder.startswith("optim.lr=0.0001@") and rows[0]["status"] == "done"
    assert json.load(open(os.path.join(workdir, folder, "config.json")))["method"] == "sft"
    assert json.load(open(os.path.join(workdir, "optim.lr=0.0001", "config.json")))["method"] == "sdft"
    assert rows[0]["metrics"]["loss"] != json.load(open(os.path.join(workdir, "optim.lr=0.0001", "sweep_point.json")))[
        "metrics"]["loss"]


def test_a_point_killed_while_exporting_is_not_done_and_its_rerun_reports_its_results(bad_rate_sweep, tmp_path):
    """A kill -9 during the export: the point's record is not written (it is written last), its export
    is half there. Before: the rerun resumed at step 6, trained nothing and recorded {"step": 6} only."""
    import shutil
    workdir = str(tmp_path / "w")
    shutil.copytree(bad_rate_sweep[0], workdir)
    point = os.path.join(workdir, "optim.lr=0.0001")
    done = json.load(open(os.path.join(point, "sweep_point.json")))
    os.remove(os.path.join(point, "sweep_point.json"))
    weights = os.path.join(point, "export", "model.safetensors")
    with open(weights, "r+b") as f:
        f.truncate(os.path.getsize(weights) // 2)
    rows = run_sweep(_tiny(), workdir, ["optim.lr=[1e30,1e-4]"], run_program, say=lambda m: None)
    assert rows[1]["status"] == "done"
    assert rows[1]["metrics"] == done["metrics"]
    from tests.hf_fixtures import reload_hf
    reload_hf(os.path.join(point, "export"))  # whole again
    assert json.load(open(os.path.join(point, "sweep_point.json")))["metrics"] == done["metrics"]
