"""`python -m sdft_jax.generate` against transformers' greedy output."""
import subprocess
import sys

import pytest
import torch

from tests import hf_fixtures as hf
from tests.conftest import real_model_dir


def _cli(path, prompt, n, *extra):
    out = subprocess.run([sys.executable, "-m", "sdft_jax.generate", "--model", path, "--prompt", prompt,
                          "--max_new_tokens", str(n), *extra], capture_output=True, check=True)
    return out.stdout.decode("utf-8").removesuffix("\n")  # bytes: no newline translation of "\r"


def _hf_chat_greedy(path, prompt, n):
    from transformers import AutoTokenizer
    from sdft_jax.generate import encode_prompt
    from sdft_jax.model.stop_tokens import stop_token_ids
    tok = AutoTokenizer.from_pretrained(path)
    ids = encode_prompt(tok, prompt, chat=True)
    model = hf.reload_hf(path)
    out = model.generate(torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                         max_new_tokens=n, do_sample=False, eos_token_id=list(stop_token_ids(path, tok)),
                         pad_token_id=tok.pad_token_id)
    return tok.decode(out[0, len(ids):], skip_special_tokens=True)


def test_cli_greedy_equals_transformers_tiny(tiny_qwen2):
    assert _cli(tiny_qwen2, "Hello", 12, "--chat") == _hf_chat_greedy(tiny_qwen2, "Hello", 12)


@pytest.mark.slow
def test_cli_greedy_equals_transformers_real_qwen():
    path = real_model_dir("qwen2.5-0.5b-instruct")
    for prompt in ["What is the capital of France? Answer in one word.",
                   "Write a Python function that returns the square of x."]:
        ours = _cli(path, prompt, 24, "--chat")
        print(repr(ours))
        assert ours == _hf_chat_greedy(path, prompt, 24)
