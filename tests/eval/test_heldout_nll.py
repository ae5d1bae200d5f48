"""The held-out NLL evaluator against transformers (torch, float64 log-softmax) on the same rows, in the
student context and in the teacher context (demonstration in context)."""
import numpy as np
import pytest
import torch

from sdft_jax.data import tokenize_all
from sdft_jax.eval.evaluators import from_config
from sdft_jax.model import load_pretrained
from tests import hf_fixtures as hf
from tests.eval.test_evaluators import ROWS, _ctx
from tests.test_train import _tiny


@pytest.mark.parametrize("context", ["student", "teacher"])
def test_heldout_nll_matches_transformers(tiny_qwen2, context):
    model = load_pretrained(tiny_qwen2, dtype="float32")
    c = _tiny(**{"eval.every": 1})
    ctx = _ctx(model, c, {"train": ROWS})
    evs = {e.name: e for e in from_config(c, ctx)}  # the defaults: demo_nll (student), teacher_nll (teacher)
    assert {n: e.context for n, e in evs.items()} == {"demo_nll": "student", "teacher_nll": "teacher"}
    name = "teacher_nll" if context == "teacher" else "demo_nll"
    got = evs[name](model.params, model.params)[name]
    ref = hf.reload_hf(tiny_qwen2)
    total, count = 0.0, 0
    for r in tokenize_all(ROWS, model.tokenizer, ctx.lengths, c.data.teacher_template)[0]:
        prompt = r.teacher if context == "teacher" else r.student
        ids = torch.tensor([prompt + r.target])
        with torch.no_grad():
            logp = torch.log_softmax(ref(ids).logits[0].double(), -1).numpy()
        positions = np.arange(len(prompt) - 1, len(prompt) + len(r.target) - 1)
        total -= logp[positions, r.target].sum()
        count += len(r.target)
    np.testing.assert_allclose(got, total / count, rtol=2e-5)
