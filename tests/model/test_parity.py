"""Our decoder vs Hugging Face transformers (torch CPU), fp32, on left-padded batches."""
import numpy as np
import pytest
import torch

from sdft_jax.model import load_pretrained
from tests import hf_fixtures as hf

TOL = 1e-4


def _max_diff(a, b, mask):
    return float(np.abs(a - b)[mask.astype(bool)].max())


@pytest.mark.parametrize("kind,overrides", [
    ("qwen2", {}),                                   # untied, q/k/v bias
    ("qwen2", {"tie_word_embeddings": True}),        # tied
    ("qwen3", {}),                                   # q/k norm, head_dim 24 != 64/4
    ("llama", {}),                                   # tied, llama3 rope scaling
    ("llama", {"tie_word_embeddings": False, "rope_scaling": {"rope_type": "linear", "factor": 2.0}}),
    ("llama", {"rope_scaling": {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 64}}),
    ("llama", {"attention_bias": True, "rope_scaling": None}),
])
def test_logits_match_transformers(kind, overrides, tmp_path):
    path = hf.build(kind, tmp_path, **overrides)
    model = load_pretrained(path, dtype="float32")
    tokens, mask = hf.left_padded_batch(length=40)
    ref = hf.hf_logits(hf.reload_hf(path), tokens, mask)
    got = np.asarray(model(tokens, mask))
    assert got.dtype == np.float32 and got.shape == ref.shape
    diff = _max_diff(ref, got, mask)
    print(f"{kind} {overrides}: max |logit diff| = {diff:.2e}")
    assert diff < TOL
    assert np.isfinite(got).all()  # pad rows too


def test_bf16_checkpoint_loads(tmp_path):
    path = hf.build("qwen2", tmp_path, dtype=torch.bfloat16)
    model = load_pretrained(path, dtype="float32")
    tokens, mask = hf.left_padded_batch()
    ref = hf.hf_logits(hf.reload_hf(path), tokens, mask)  # upcast bf16 weights, fp32 compute
    assert _max_diff(ref, np.asarray(model(tokens, mask)), mask) < TOL


def test_bf16_compute_close_to_fp32(tiny_qwen2):
    tokens, mask = hf.left_padded_batch()
    fp32 = np.asarray(load_pretrained(tiny_qwen2, dtype="float32")(tokens, mask))
    bf16 = np.asarray(load_pretrained(tiny_qwen2, dtype="bfloat16")(tokens, mask))
    assert bf16.dtype == np.float32  # logits always fp32
    scale = np.abs(fp32).max()
    assert _max_diff(fp32, bf16, mask) < 0.05 * scale


@pytest.mark.parametrize("scan_layers,remat", [(False, "none"), (True, "full"), (False, "dots")])
def test_layer_loop_and_remat_options_do_not_change_logits(tiny_qwen3, scan_layers, remat):
    tokens, mask = hf.left_padded_batch()
    base = np.asarray(load_pretrained(tiny_qwen3, dtype="float32")(tokens, mask))
    other = load_pretrained(tiny_qwen3, dtype="float32", scan_layers=scan_layers, remat=remat)
    np.testing.assert_allclose(np.asarray(other(tokens, mask)), base, atol=1e-5)


def test_left_padding_does_not_change_real_positions(tiny_llama):
    model = load_pretrained(tiny_llama, dtype="float32")
    rng = np.random.RandomState(1)
    seq = rng.randint(0, hf.VOCAB, (1, 10))
    padded = np.concatenate([np.zeros((1, 6), np.int64), seq], axis=1)
    mask = np.concatenate([np.zeros((1, 6), np.int64), np.ones((1, 10), np.int64)], axis=1)
    np.testing.assert_allclose(np.asarray(model(padded, mask))[:, 6:], np.asarray(model(seq)), atol=1e-5)


def test_apply_is_pure_and_matches_call(tiny_qwen2):
    import jax
    model = load_pretrained(tiny_qwen2, dtype="float32")
    tokens, mask = hf.left_padded_batch()
    via_call = np.asarray(model(tokens, mask))
    via_apply = np.asarray(model.apply(model.params, jax.numpy.asarray(tokens), jax.numpy.asarray(mask)))
    np.testing.assert_array_equal(via_call, via_apply)
    zeroed = jax.tree.map(lambda x: x * 0, model.params)
    assert not np.allclose(np.asarray(model.apply(zeroed, tokens, mask)), via_call)
    assert model.tokenizer is not None and model.tokenizer.chat_template


@pytest.mark.parametrize("block", [7, 16])
def test_causal_query_blocks_match_transformers(tiny_qwen3, block):
    """Attention in query blocks (each scoring only the keys at or before its last slot) gives the
    unblocked logits and transformers' at every real position of a left-padded batch of 40
    (blocks of 7: a ragged last one)."""
    tokens, mask = hf.left_padded_batch(length=40)
    full = np.asarray(load_pretrained(tiny_qwen3, dtype="float32")(tokens, mask))
    blocked = np.asarray(load_pretrained(tiny_qwen3, dtype="float32", query_block=block)(tokens, mask))
    assert np.isfinite(blocked).all()
    assert _max_diff(blocked, full, mask) < 1e-5  # pad positions attend to nothing real; ignored
    assert _max_diff(hf.hf_logits(hf.reload_hf(tiny_qwen3), tokens, mask), blocked, mask) < TOL
