"""Log-likelihood scorer vs transformers, and the lm-evaluation-harness backend on a local task."""
import json
import os

import numpy as np
import pytest
import torch

from sdft_jax.eval.likelihood import LikelihoodScorer
from sdft_jax.model import load_pretrained
from tests import hf_fixtures as hf

ROWS = [{"query": f"Q{i}: pick the right one:", "choices": [" alpha", " beta gamma", " delta", " e"], "gold": i % 4}
        for i in range(10)]


def _hf_continuation_logprob(ref, tok, context, continuation):
    whole = tok(context + continuation, add_special_tokens=False).input_ids
    ctx = tok(context, add_special_tokens=False).input_ids
    with torch.no_grad():
        logits = ref(torch.tensor([whole])).logits[0].float()
    lp = torch.log_softmax(logits[:-1], -1)
    targets = torch.tensor(whole[1:])
    picked = lp[torch.arange(len(targets)), targets]
    return float(picked[len(ctx) - 1:].sum())


def test_loglikelihood_and_rolling_match_transformers(tiny_llama):
    model = load_pretrained(tiny_llama, dtype="float32")
    scorer = LikelihoodScorer(model, batch_size=4, max_length=64)
    ref, tok = hf.reload_hf(tiny_llama), model.tokenizer
    pairs = [(r["query"], c) for r in ROWS[:3] for c in r["choices"]]
    ours = scorer.loglikelihood(pairs)
    theirs = [_hf_continuation_logprob(ref, tok, c, x) for c, x in pairs]
    np.testing.assert_allclose([lp for lp, _ in ours], theirs, atol=1e-4)
    text = "The quick brown fox jumps over the lazy dog. " * 3  # > max_length: several windows
    ids = [scorer.prefix_id] + tok(text, add_special_tokens=False).input_ids
    assert len(ids) > 64
    with torch.no_grad():  # full-context reference (the model's positions allow it)
        lp = torch.log_softmax(ref(torch.tensor([ids])).logits[0, :-1].float(), -1)
    full = float(lp[torch.arange(len(ids) - 1), torch.tensor(ids[1:])].sum())
    rolling = scorer.loglikelihood_rolling([text])[0]
    windowed = LikelihoodScorer(model, batch_size=4, max_length=256).loglikelihood_rolling([text])[0]
    assert abs(windowed - full) < 1e-3  # one window == the full sequence
    assert np.isfinite(rolling) and rolling < 0


def test_lm_eval_backend_agrees_with_likelihood_scorer(tiny_qwen2, tmp_path):
    pytest.importorskip("lm_eval")
    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager
    from sdft_jax.eval.lm_eval_backend import SDFTJaxLM

    data = tmp_path / "mc.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    (tmp_path / "tiny_mc.yaml").write_text(
        "task: tiny_mc\ndataset_path: json\ndataset_kwargs:\n  data_files:\n"
        f"    test: {data}\ntest_split: test\noutput_type: multiple_choice\ntarget_delimiter: \"\"\n"
        "doc_to_text: \"{{query}}\"\ndoc_to_choice: \"{{choices}}\"\ndoc_to_target: \"{{gold}}\"\n"
        "metric_list:\n  - metric: acc\n  - metric: acc_norm\n")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    lm = SDFTJaxLM(path=tiny_qwen2, batch_size=4, max_length=128)
    out = simple_evaluate(model=lm, tasks=["tiny_mc"], task_manager=TaskManager(include_path=str(tmp_path)))
    res = out["results"]["tiny_mc"]
    ours = LikelihoodScorer(load_pretrained(tiny_qwen2, dtype="float32"), batch_size=4,
                            max_length=128).multiple_choice(ROWS)
    print("lm-eval:", res, "ours:", ours)
    assert res["acc,none"] == pytest.approx(ours["acc"]) and res["acc_norm,none"] == pytest.approx(ours["acc_norm"])
    gen = lm.generate_until([type("Req", (), {"args": ("Hello", {"until": ["\n"], "max_gen_toks": 5})})()])
    assert isinstance(gen[0], str) and "\n" not in gen[0]
