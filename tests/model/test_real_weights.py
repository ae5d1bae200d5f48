"""Real checkpoints built offline by ../shared/tools/real_models.py (skipped when absent)."""
import numpy as np
import pytest

from sdft_jax.model import load_pretrained
from tests import hf_fixtures as hf
from tests.conftest import real_model_dir

PROMPTS = ["def fibonacci(n):\n    \"\"\"Return the n-th Fibonacci number.\"\"\"\n",
           "The capital of France is"]


@pytest.mark.slow
@pytest.mark.parametrize("name", ["qwen2.5-0.5b-instruct", "smollm2-135m-instruct"])
def test_real_model_logits_match_transformers(name):
    path = real_model_dir(name)
    model = load_pretrained(path, dtype="float32")
    print(f"{name}: load_pretrained took {model.load_seconds:.2f} s")
    tok = model.tokenizer
    ids = [tok(p).input_ids for p in PROMPTS]
    length = max(map(len, ids))
    tokens = np.full((len(ids), length), tok.pad_token_id or 0, np.int64)
    mask = np.zeros_like(tokens)
    for i, row in enumerate(ids):  # left padding
        tokens[i, length - len(row):], mask[i, length - len(row):] = row, 1
    ref = hf.hf_logits(hf.reload_hf(path), tokens, mask)
    got = np.asarray(model(tokens, mask))
    keep = mask.astype(bool)
    diff = float(np.abs(ref - got)[keep].max())
    agree = float((ref.argmax(-1) == got.argmax(-1))[keep].mean())
    print(f"{name}: max |logit diff| = {diff:.2e} (logit scale {np.abs(ref[keep]).max():.1f}), "
          f"top-1 agreement {agree:.4f}")
    assert agree == 1.0
    assert diff < 1e-2
