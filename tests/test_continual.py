"""The continual runner end to end on tiny two-stage sequences, both methods."""
import importlib.util
import json
import os

import pytest

from sdft_jax.programs.continual import run_continual

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _config(arg):
    spec = importlib.util.spec_from_file_location("cont", os.path.join(REPO, "configs", "continual.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.get_config(arg)


@pytest.mark.parametrize("method", ["sdft", "sft"])
def test_two_stage_run_produces_matrix_metrics_and_plot(tmp_path, method):
    c = _config(f"model=tiny,method={method}")
    c.eval.every = 2  # also evaluates every task inside each stage
    if method == "sdft":  # the teacher on every task, answers capped and cut ones counted, a KL in stage 2 only
        c.eval.teacher_on_tasks, c.eval.count_cut, c.eval.max_new_tokens = True, True, 3
        c.stages[1].evals = dict(kl=dict(type="kl_to_base", examples=4, max_new_tokens=4, base_path=c.model.path))
    workdir = str(tmp_path / method)
    res = run_continual(c, workdir)
    assert len(res["matrix"]) == 2
    if method == "sdft":
        names = res["columns"][:2]  # demonstrations, demonstrations#1
        assert {f"teacher:{n}" for n in names} | {f"{n}/cut" for n in names} <= set(res["columns"])
        assert "kl" not in res["columns"]  # a stage's own evaluator is not a column of the matrix
        # The random tiny model never ends an answer within 3 tokens: every scored answer is cut.
        row = dict(zip(res["columns"], res["matrix"][0]))
        assert row[f"{names[0]}/cut"] == row[f"teacher:{names[0]}/cut"] == c.eval.examples
        inside = [json.loads(l) for l in open(os.path.join(workdir, "stage1_demonstrations", "metrics.jsonl"))]
        assert any("eval/kl" in r and f"eval/teacher:{names[1]}" in r for r in inside)
    for key in ("average_accuracy", "backward_transfer", "forward_transfer", "normalized"):
        assert key in res
    assert os.path.getsize(os.path.join(workdir, "continual.png")) > 1000
    assert open(os.path.join(workdir, "matrix.csv")).read().startswith("after_stage,")
    stage_metrics = [json.loads(l) for l in open(os.path.join(workdir, "stage0_demonstrations", "metrics.jsonl"))]
    assert any(k.startswith("eval/") for k in stage_metrics[1])
    before = os.path.getmtime(os.path.join(workdir, "stage1_demonstrations", "metrics.jsonl"))
    again = run_continual(c, workdir)  # resumes: nothing is retrained
    assert again["matrix"] == res["matrix"]
    assert os.path.getmtime(os.path.join(workdir, "stage1_demonstrations", "metrics.jsonl")) == before
