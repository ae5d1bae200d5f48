"""Sampler vs transformers generate (greedy), vs the full forward pass, and vs softmax statistics."""
import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from sdft_jax import sharding as shd
from sdft_jax.model import load_pretrained
from sdft_jax.core.sampler import SamplingConfig, make_generate, sampling_log_probs
from sdft_jax.data.buckets import pad_to_bucket
from tests import hf_fixtures as hf


def _run(model, sc, tokens, mask, seed=0, **kw):
    gen = make_generate(model.graphdef, model.config, sc, **kw)
    return gen(model.params, jnp.asarray(tokens), jnp.asarray(mask), jax.random.key(seed))


def _hf_greedy(ref, tokens, mask, n, eos):
    out = ref.generate(torch.tensor(tokens), attention_mask=torch.tensor(mask), max_new_tokens=n,
                       do_sample=False, pad_token_id=0, eos_token_id=eos)
    return out[:, tokens.shape[1]:].numpy()


@pytest.mark.parametrize("fixture", ["tiny_qwen2", "tiny_qwen3", "tiny_llama"])
def test_greedy_matches_transformers_with_early_eos(fixture, request):
    path = request.getfixturevalue(fixture)
    model, ref = load_pretrained(path, dtype="float32"), hf.reload_hf(path)
    tokens, mask = hf.left_padded_batch(seed=3, batch=4, length=12)
    n = 16
    free = _hf_greedy(ref, tokens, mask, n, eos=None)
    eos = int(free[0, 3])  # a token row 0 really emits: that row stops early
    expected = _hf_greedy(ref, tokens, mask, n, eos=eos)
    r = _run(model, SamplingConfig(max_new_tokens=n, temperature=0.0, stop_ids=(eos,)), tokens, mask)
    got, got_mask = np.asarray(r.tokens), np.asarray(r.mask)
    assert int(r.lengths[0]) <= 4
    for row in range(tokens.shape[0]):
        length = int(got_mask[row].sum())
        hf_row = expected[row]
        hf_len = (int(np.argmax(hf_row == eos)) + 1) if (hf_row == eos).any() else n
        assert length == hf_len, (row, length, hf_len)
        np.testing.assert_array_equal(got[row, :length], hf_row[:length])
        assert (got[row, length:] == 0).all() and (got_mask[row, length:] == 0).all()


def _full_forward_logits(model, tokens, mask, rollout):
    seq = np.concatenate([tokens, np.asarray(rollout.tokens)], axis=1)
    seq_mask = np.concatenate([mask, np.asarray(rollout.mask)], axis=1)
    logits = np.asarray(model(seq, seq_mask))
    P = tokens.shape[1]
    return logits[:, P - 1: P - 1 + rollout.tokens.shape[1]]  # logits that predict each completion token


def test_cached_decoding_equals_full_forward(tiny_qwen3):
    model = load_pretrained(tiny_qwen3, dtype="float32")
    tokens, mask = hf.left_padded_batch(seed=5, batch=3, length=10)
    sc = SamplingConfig(max_new_tokens=12, temperature=1.0)
    rollout, logits = _run(model, sc, tokens, mask, return_logits=True)
    full = _full_forward_logits(model, tokens, mask, rollout)
    live = np.asarray(rollout.mask).astype(bool)
    diff = float(np.abs(np.asarray(logits) - full)[live].max())
    print(f"cached vs full forward: max |logit diff| = {diff:.2e}")
    assert diff < 1e-4
    # Returned log-probs are those of the model (T=1) and of the sampling distribution at the tokens.
    toks = np.asarray(rollout.tokens)[..., None]
    model_lp = np.take_along_axis(np.asarray(jax.nn.log_softmax(full)), toks, -1)[..., 0]
    np.testing.assert_allclose(np.asarray(rollout.model_logprobs)[live], model_lp[live], atol=1e-4)


def _chi2_critical(df: int) -> float:
    """Wilson-Hilferty approximation of the 99.9% chi-square quantile."""
    z = 3.09
    return df * (1 - 2 / (9 * df) + z * math.sqrt(2 / (9 * df))) ** 3


@pytest.mark.parametrize("sc", [
    SamplingConfig(max_new_tokens=1, temperature=1.0),
    SamplingConfig(max_new_tokens=1, temperature=0.7, top_k=6),
    SamplingConfig(max_new_tokens=1, temperature=1.3, top_p=0.6),
])
def test_sampling_distribution_matches_softmax(tiny_llama, sc):
    model = load_pretrained(tiny_llama, dtype="float32")
    draws = 8192
    prompt = np.random.RandomState(7).randint(0, hf.VOCAB, (1, 8))
    tokens, mask = np.repeat(prompt, draws, axis=0), np.ones((draws, 8), np.int64)
    r = _run(model, sc, tokens, mask, seed=11)
    logits = np.asarray(model(prompt))[0, -1]
    expected = np.exp(np.asarray(sampling_log_probs(jnp.asarray(logits[None]), sc))[0])
    counts = np.bincount(np.asarray(r.tokens[:, 0]), minlength=logits.shape[-1])
    assert counts[expected == 0].sum() == 0  # truncated tokens are never drawn
    if sc.top_k:
        assert (expected > 0).sum() == sc.top_k
    big = expected * draws >= 5  # pool the rare tokens into one bin
    obs = np.append(counts[big], counts[~big].sum())
    exp = np.append(expected[big], expected[~big].sum()) * draws
    keep = exp > 0
    chi2 = float(((obs[keep] - exp[keep]) ** 2 / exp[keep]).sum())
    df = int(keep.sum()) - 1
    print(f"{sc}: chi2 = {chi2:.1f}, df = {df}, critical = {_chi2_critical(df):.1f}")
    assert chi2 < _chi2_critical(df)
    # The returned sampling log-prob is that of the drawn token.
    lp = np.log(expected)[np.asarray(r.tokens[:, 0])]
    np.testing.assert_allclose(np.asarray(r.logprobs[:, 0]), lp, atol=1e-4)


def test_top_p_keeps_the_crossing_token():
    logits = jnp.log(jnp.asarray([[0.5, 0.3, 0.15, 0.05]]))
    lp = sampling_log_probs(logits, SamplingConfig(top_p=0.7))
    np.testing.assert_allclose(np.exp(np.asarray(lp)), [[0.625, 0.375, 0.0, 0.0]], atol=1e-6)


def test_determinism_and_no_recompilation(tiny_qwen2):
    model = load_pretrained(tiny_qwen2, dtype="float32")
    sc = SamplingConfig(max_new_tokens=8, temperature=1.0, top_k=20)
    gen = make_generate(model.graphdef, model.config, sc)
    a_tok, a_mask = pad_to_bucket([[5, 6, 7], [8, 9]], buckets=(16, 32))
    b_tok, b_mask = pad_to_bucket([[1, 2, 3, 4, 5, 6], [7]], buckets=(16, 32))
    assert a_tok.shape == b_tok.shape == (2, 16)
    r1 = gen(model.params, a_tok, a_mask, jax.random.key(1))
    r2 = gen(model.params, a_tok, a_mask, jax.random.key(1))
    r3 = gen(model.params, a_tok, a_mask, jax.random.key(2))
    gen(model.params, b_tok, b_mask, jax.random.key(1))
    np.testing.assert_array_equal(np.asarray(r1.tokens), np.asarray(r2.tokens))
    assert not np.array_equal(np.asarray(r1.tokens), np.asarray(r3.tokens))
    assert gen._cache_size() == 1  # same bucket -> one compiled program


def test_sharded_generation_equals_unsharded(tiny_qwen2):
    tokens, mask = hf.left_padded_batch(seed=2, batch=8, length=12)
    sc = SamplingConfig(max_new_tokens=10, temperature=0.0)
    single = _run(load_pretrained(tiny_qwen2, dtype="float32"), sc, tokens, mask)
    mesh = shd.make_mesh(2, 2, 2)
    model = load_pretrained(tiny_qwen2, dtype="float32", mesh=mesh)
    batch_sh = shd.batch_sharding(mesh)
    sharded = _run(model, sc, jax.device_put(tokens, batch_sh), jax.device_put(mask, batch_sh))
    np.testing.assert_array_equal(np.asarray(sharded.tokens), np.asarray(single.tokens))
    np.testing.assert_allclose(np.asarray(sharded.model_logprobs), np.asarray(single.model_logprobs), atol=1e-5)


def test_pad_to_bucket_errors_on_too_long_prompt():
    with pytest.raises(ValueError, match="prompt of 40 tokens exceeds the largest length bucket 32"):
        pad_to_bucket([list(range(40))], buckets=(16, 32))


def test_fp32_master_weights_decode_reads_compute_dtype_weights(tiny_qwen2):
    """fp32 params + bf16 compute: every loop of the program we hand XLA (decode, layer scan)
    carries bf16 weights (half the bytes per decoded token), and the rollout equals sampling
    from params cast to bf16 beforehand. Checked on the lowered StableHLO: XLA:CPU itself
    upcasts bf16 matmuls to f32, so its compiled loops say nothing about a GPU/TPU."""
    model = load_pretrained(tiny_qwen2, dtype="float32", compute_dtype="bfloat16")
    sc = SamplingConfig(max_new_tokens=6, temperature=0.0)
    tokens, mask = hf.left_padded_batch(seed=3, batch=2, length=8)
    gen = make_generate(model.graphdef, model.config, sc)
    text = gen.lower(model.params, jnp.asarray(tokens), jnp.asarray(mask), jax.random.key(0)).as_text()
    fp32_weights = {"tensor<" + "x".join(map(str, x.shape)) + "xf32>" for x in jax.tree.leaves(model.params)
                    if x.ndim >= 2}
    loops = [line.split(") : ", 1)[1] for line in text.splitlines() if "stablehlo.while(" in line]
    assert len([t for t in loops if "bf16>" in t]) >= 2  # the decode loop and the layer scans
    for carried in loops:
        assert not [w for w in fp32_weights if w in carried], f"fp32 weights carried by a loop: {carried[:300]}"
    cast = jax.tree.map(lambda x: x.astype(jnp.bfloat16), model.params)
    a = gen(model.params, jnp.asarray(tokens), jnp.asarray(mask), jax.random.key(0))
    b = gen(cast, jnp.asarray(tokens), jnp.asarray(mask), jax.random.key(0))
    np.testing.assert_array_equal(np.asarray(a.tokens), np.asarray(b.tokens))


def test_length_bucket_ladder():
    from sdft_jax.data.buckets import buckets_up_to
    assert buckets_up_to(1024) == (64, 128, 256, 512, 1024)  # growth 2: powers of two
    assert buckets_up_to(1000, growth=1.5) == (64, 96, 160, 256, 384, 576, 864, 1000)
    assert buckets_up_to(40) == (40,) and buckets_up_to(64, growth=1.5) == (64,)
    for growth in (1.1, 1.5, 2.0, 3.0):
        ladder = buckets_up_to(4096, growth=growth)
        assert all(b % 32 == 0 and b2 > b for b, b2 in zip(ladder, ladder[1:]))
    with pytest.raises(ValueError, match="growth 1.0 must be in"):
        buckets_up_to(128, growth=1.0)


def test_chunked_decode_reads_only_filled_slots_and_equals_the_full_forward(tiny_qwen3):
    """140 new tokens in 3 chunks (64, 128, 140): the cache holds the slots filled by a chunk's end.
    Logits equal an independent full forward pass over prompt + completion, and the tokens equal
    decoding over the whole buffer (decode_chunks=1)."""
    from sdft_jax.core.sampler import decode_chunk_ends
    model = load_pretrained(tiny_qwen3, dtype="float32")
    tokens, mask = hf.left_padded_batch(seed=3, batch=2, length=10)
    chunked = SamplingConfig(max_new_tokens=140, temperature=1.0, decode_chunks=8)
    assert decode_chunk_ends(140, 8) == [64, 128, 140]
    rollout, logits = _run(model, chunked, tokens, mask, return_logits=True)
    live = np.asarray(rollout.mask).astype(bool)
    assert live.sum() == 2 * 140  # no stop token: every step decoded
    full = _full_forward_logits(model, tokens, mask, rollout)
    assert float(np.abs(np.asarray(logits) - full)[live].max()) < 1e-4
    whole = _run(model, SamplingConfig(max_new_tokens=140, temperature=1.0, decode_chunks=1), tokens, mask)
    np.testing.assert_array_equal(np.asarray(rollout.tokens), np.asarray(whole.tokens))

    def loops(sc):
        return make_generate(model.graphdef, model.config, sc).lower(
            model.params, jnp.asarray(tokens), jnp.asarray(mask), jax.random.key(0)).as_text().count("stablehlo.while")
    whole_sc = SamplingConfig(max_new_tokens=140, temperature=1.0, decode_chunks=1)
    assert loops(chunked) - loops(whole_sc) == 2 * 2  # 2 more decode loops, each with its layer scan


def test_rollout_batches_generate_each_group_as_its_own_rollout(tiny_qwen2):
    """sampling.rollout_batches=2: the batch's halves, each generated alone with its group's key."""
    model = load_pretrained(tiny_qwen2, dtype="float32")
    tokens, mask = hf.left_padded_batch(batch=4, length=10)
    key = jax.random.key(3)
    sc = SamplingConfig(max_new_tokens=12, temperature=1.0)
    grouped = make_generate(model.graphdef, model.config, dataclasses.replace(sc, rollout_batches=2))(
        model.params, jnp.asarray(tokens), jnp.asarray(mask), key)
    whole = make_generate(model.graphdef, model.config, sc)
    for g, rows in enumerate((slice(0, 2), slice(2, 4))):
        alone = whole(model.params, jnp.asarray(tokens[rows]), jnp.asarray(mask[rows]),
                      jax.random.fold_in(key, 1_000_003 + g))
        np.testing.assert_array_equal(np.asarray(grouped.tokens[rows]), np.asarray(alone.tokens))
        np.testing.assert_array_equal(np.asarray(grouped.mask[rows]), np.asarray(alone.mask))
        np.testing.assert_allclose(np.asarray(grouped.model_logprobs[rows]), np.asarray(alone.model_logprobs),
                                   rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="not divisible by sampling.rollout_batches=3"):
        make_generate(model.graphdef, model.config, dataclasses.replace(sc, rollout_batches=3))(
            model.params, jnp.asarray(tokens), jnp.asarray(mask), key)
