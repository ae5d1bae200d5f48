"""sdft_jax.sweep: a grid of tiny runs, one folder each, a summary, resumable; bad axes fail at once."""
import json
import os
import subprocess
import sys

import pytest

from sdft_jax.sweep import SweepError, grid, parse_axis, point_name, run_sweep
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
        run_sweep(_tiny(), str(tmp_path), ["optim.lr=[1e-3,-1]"])
    assert not os.path.exists(tmp_path / "optim.lr=0.001")


def test_grid_runs_each_point_in_its_folder_and_a_rerun_skips_them(tmp_path):
    base = _tiny(steps=2, **{"optim.warmup_steps": 0, "checkpoint.every": 2, "eval.every": 0, "log.samples_every": 0})
    rows = run_sweep(base, str(tmp_path), ["optim.lr=[1e-3,1e-2]", "method=[sdft,sft]"], say=lambda m: None)
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
    again = run_sweep(base, str(tmp_path), ["optim.lr=[1e-3,1e-2]", "method=[sdft,sft]"], say=messages.append)
    assert [r["metrics"] for r in again] == [r["metrics"] for r in rows]
    assert sum("skipped" in m for m in messages) == 4


def test_command_line_reports_a_bad_sweep_in_one_line(tmp_path):
    cmd = [sys.executable, "-m", "sdft_jax.sweep", f"--config={REPO}/configs/tiny.py", f"--workdir={tmp_path}",
           "--sweep=optim.lrr=[1e-3]"]
    out = subprocess.run(cmd, env=_env(), capture_output=True, text=True, cwd=REPO)
    assert out.returncode == 1 and out.stderr.strip() == "error: --sweep optim.lrr: not a key of the config"
