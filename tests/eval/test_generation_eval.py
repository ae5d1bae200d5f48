"""Generation-based evaluation: our sampler + scorers, student vs teacher context."""
import json
import os
import subprocess
import sys

import pytest

from sdft_jax.eval.generation import evaluate
from sdft_jax.model import load_pretrained
from tests.conftest import real_model_dir, shared_data_dir


def _examples(n=5):
    return [{"task": "demonstrations", "id": f"d/{i}", "system": "", "prompt": f"Say {i}.",
             "demonstration": f"{i}", "answer": str(i), "raw": json.dumps({"answer": str(i)})} for i in range(n)]


def test_evaluate_writes_records_and_is_deterministic(tiny_qwen2, tmp_path):
    model = load_pretrained(tiny_qwen2, dtype="float32")
    out = str(tmp_path / "eval.jsonl")
    m1 = evaluate(model, _examples(), "exact_match", max_new_tokens=6, batch_size=4, out_jsonl=out, stop_ids=())
    m2 = evaluate(model, _examples(), "exact_match", max_new_tokens=6, batch_size=4, stop_ids=())
    assert m1["n"] == 5 and m1["context"] == "student" and m1 == {**m2, "seconds": m1["seconds"]}
    records = [json.loads(l) for l in open(out)]
    assert [r["id"] for r in records] == [f"d/{i}" for i in range(5)]
    assert all(set(r) >= {"prompt", "completion", "score"} for r in records)
    teacher = evaluate(model, _examples(), "exact_match", with_demonstration=True, max_new_tokens=6, stop_ids=())
    assert teacher["context"] == "teacher"
    sampled = evaluate(model, _examples(3), "exact_match", max_new_tokens=4, temperature=1.0, num_samples=4,
                       stop_ids=())
    assert 0.0 <= sampled["pass@1"] <= sampled["pass@4"] <= 1.0


def test_rows_longer_than_max_prompt_are_counted_and_named_on_stderr(tiny_qwen2, capsys):
    model = load_pretrained(tiny_qwen2, dtype="float32")
    rows = _examples(3)
    rows[1]["prompt"] = "Say it. " * 40
    m = evaluate(model, rows, "exact_match", max_new_tokens=2, batch_size=4, max_prompt=64, stop_ids=())
    assert m["n"] == 2 and m["skipped_too_long"] == 1
    assert "eval exact_match: 1 of 3 rows are longer than max_prompt=64 tokens and were not evaluated" in capsys.readouterr().err


def test_cut_counts_answers_that_reach_the_cap_before_a_stop_token(tiny_qwen2):
    """`cut` against a greedy decode by transformers: a row is cut when none of its first N tokens
    is a stop token (the stop: a token that transformers' decode writes in some rows only)."""
    import numpy as np
    from sdft_jax.data.prompts import student_context
    from tests import hf_fixtures as hf
    model, ref, n = load_pretrained(tiny_qwen2, dtype="float32"), hf.reload_hf(tiny_qwen2), 4
    rows = []
    for ex in _examples(6):
        ids = model.tokenizer(student_context(model.tokenizer, ex), add_special_tokens=False).input_ids
        for _ in range(n):
            logits = hf.hf_logits(ref, np.asarray([ids]), np.ones((1, len(ids)), np.int64))
            ids = ids + [int(logits[0, -1].argmax())]
        rows.append(ids[-n:])
    stops = next((t,) for t in sorted({t for r in rows for t in r}) if 0 < sum(t in r for r in rows) < len(rows))
    want = sum(not set(r) & set(stops) for r in rows)
    got = evaluate(model, _examples(6), "exact_match", max_new_tokens=n, batch_size=4, stop_ids=stops)
    assert 0 < want < 6 and got["cut"] == want
    assert evaluate(model, _examples(6), "exact_match", max_new_tokens=n, batch_size=4, stop_ids=())["cut"] == 6


@pytest.mark.slow
def test_real_qwen_teacher_ceiling_vs_student_on_tooluse(tmp_path):
    """Qwen2.5-Coder-0.5B-Instruct on tool-use rows: student context vs demonstration in context.
    CI uses 1 row and 32 new tokens (tool-use prompts are ~900 tokens: ~40 s of fp32 prefill per row
    per context on 2 cores); the 20-row figures in the issue note come from the same CLI with --limit 20."""
    path = real_model_dir("qwen2.5-0.5b-instruct")
    data = os.path.join(shared_data_dir(), "tooluse", "sdft_tooluse_eval.jsonl")
    results = {}
    for ctx, flag in (("student", []), ("teacher", ["--with_demonstration"])):
        out = subprocess.run([sys.executable, "-m", "sdft_jax.eval", "--model", path, "--task", "tooluse",
                              "--data", data, "--limit", "1", "--max_new_tokens", "32", "--batch_size", "1",
                              "--data_dir", str(tmp_path), *flag], capture_output=True, text=True, check=True)
        results[ctx] = json.loads(out.stdout.strip().splitlines()[-1])
    print(json.dumps(results))  # the figures; which context wins is an empirical question, not asserted
    assert results["student"]["n"] == results["teacher"]["n"] == 1
    assert results["student"]["context"] == "student" and results["teacher"]["context"] == "teacher"
    for ctx in results.values():
        assert 0.0 <= ctx["accuracy"] <= 1.0 and ctx["skipped_too_long"] == 0


def test_progress_goes_to_stderr_with_rate_and_eta(tiny_qwen2, capsys):
    model = load_pretrained(tiny_qwen2, dtype="float32")
    evaluate(model, _examples(5), "exact_match", max_new_tokens=6, batch_size=2, stop_ids=(), progress=True)
    out, err = capsys.readouterr()
    lines = [line for line in err.splitlines() if line.startswith("eval exact_match")]
    assert [line.split(": ")[1].split(" rows")[0] for line in lines] == ["2/5", "4/5", "5/5"]
    assert all("generated tok/s" in line and "ETA" in line for line in lines)
    assert "eval exact_match" not in out
