"""base_answer_nll: the base's greedy answers are written once, and the NLL of them equals the same
quantity computed by transformers (torch) on the same tokens."""
import json

import numpy as np
import torch

from sdft_jax import sharding as shd
from sdft_jax.data import Lengths, student_context
from sdft_jax.eval.base_drift import GENERAL_PROMPTS
from sdft_jax.eval.evaluators import EvalContext, build
from sdft_jax.model import load_pretrained
from tests import hf_fixtures as hf
from tests.test_train import _tiny


def _reference_nll(path, rows, tok, max_completion):
    model = hf.reload_hf(path)
    eot = tok.convert_tokens_to_ids("<|im_end|>")
    total, count = 0.0, 0
    for r in rows:
        prompt = tok(student_context(tok, r), add_special_tokens=False).input_ids
        target = (tok(r["demonstration"], add_special_tokens=False).input_ids + [eot])[:max_completion]
        with torch.no_grad():
            logp = torch.log_softmax(model(torch.tensor([prompt + target])).logits[0].float(), -1)
        for j, t in enumerate(target):
            total -= float(logp[len(prompt) + j - 1, t])
            count += 1
    return total / count


def test_answers_written_once_and_nll_equals_transformers(tiny_qwen2, tmp_path):
    model = load_pretrained(tiny_qwen2, dtype="float32")
    c = _tiny()
    ctx = EvalContext(c, model, shd.single_device_mesh(), Lengths(128, 256, 12), {})
    answers = str(tmp_path / "base_answers.jsonl")
    ev = build("drift", dict(type="base_answer_nll", answers=answers, examples=6, max_new_tokens=12), ctx)
    rows = [json.loads(line) for line in open(answers)]
    assert [r["prompt"] for r in rows] == list(GENERAL_PROMPTS[:6])
    ours = ev(model.params)["drift"]
    ref = _reference_nll(tiny_qwen2, rows, model.tokenizer, 10**6)  # whole answers + end-of-turn
    np.testing.assert_allclose(ours, ref, rtol=1e-4)
    # A later build (e.g. after a stage, with another model) reads the same answers.
    again = build("drift", dict(type="base_answer_nll", answers=answers, examples=6),
                  EvalContext(c, model, None, None, {}))  # as the continual runner builds it
    np.testing.assert_allclose(again(model.params)["drift"], ours, rtol=1e-6)
