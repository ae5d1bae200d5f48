"""Divergences vs a float64 NumPy reference; masks and aggregation on hand-made inputs; chunking."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sdft_jax.core import losses



def _np_log_softmax(x):
    x = x.astype(np.float64)
    x = x - x.max(-1, keepdims=True)
    return x - np.log(np.exp(x).sum(-1, keepdims=True))


def _np_kl(lp_a, lp_b):
    return (np.exp(lp_a) * (lp_a - lp_b)).sum(-1)


def _np_divergence(s, t, kind, beta=0.5, top_k=None, support="teacher"):
    ls, lt = _np_log_softmax(s), _np_log_softmax(t)
    if top_k:
        ref = lt if support == "teacher" else ls
        idx = np.argsort(-ref, axis=-1)[..., :top_k]

        def restrict(lp):
            head = np.take_along_axis(lp, idx, -1)
            tail = np.log(1.0 - np.exp(head).sum(-1, keepdims=True))
            return np.concatenate([head, tail], -1)
        ls, lt = restrict(ls), restrict(lt)
    if kind == "forward_kl":
        return _np_kl(lt, ls)
    if kind == "reverse_kl":
        return _np_kl(ls, lt)
    m = np.log(beta * np.exp(lt) + (1 - beta) * np.exp(ls))
    return beta * _np_kl(lt, m) + (1 - beta) * _np_kl(ls, m)


def _logits(seed, shape=(3, 5, 50), scale=3.0):
    r = np.random.RandomState(seed)
    return (scale * r.randn(*shape)).astype(np.float32), (scale * r.randn(*shape)).astype(np.float32)


CASES = [("forward_kl", {}), ("reverse_kl", {}), ("jsd", {"beta": 0.5}), ("jsd", {"beta": 0.1}),
         ("forward_kl", {"top_k": 8}), ("reverse_kl", {"top_k": 8, "top_k_support": "student"}),
         ("jsd", {"beta": 0.3, "top_k": 5})]


@pytest.mark.parametrize("kind,kw", CASES)
def test_divergence_matches_numpy_float64(kind, kw):
    s, t = _logits(0)
    got = np.asarray(losses.per_token_divergence(jnp.asarray(s), jnp.asarray(t), kind=kind, **kw))
    want = _np_divergence(s, t, kind, kw.get("beta", 0.5), kw.get("top_k"), kw.get("top_k_support", "teacher"))
    rel = np.abs(got - want).max() / np.abs(want).max()
    print(f"{kind} {kw}: max relative error {rel:.2e}")
    assert rel < 1e-5
    assert (got >= -1e-6).all()


@pytest.mark.parametrize("kind", losses.KINDS)
def test_divergence_of_identical_distributions_is_zero(kind):
    s, _ = _logits(1)
    np.testing.assert_allclose(np.asarray(losses.per_token_divergence(s, s, kind=kind)), 0.0, atol=1e-6)


def test_top_k_equal_vocab_is_full_and_jsd_limits():
    s, t = _logits(2)
    full = losses.per_token_divergence(s, t, kind="forward_kl")
    np.testing.assert_allclose(losses.per_token_divergence(s, t, kind="forward_kl", top_k=50), full, rtol=1e-6)
    # beta 0 / 1 are the two KLs (the released trainer's alpha), not a silent zero loss.
    np.testing.assert_allclose(losses.per_token_divergence(s, t, kind="jsd", beta=0.0),
                               _np_divergence(s, t, "forward_kl"), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(losses.per_token_divergence(s, t, kind="jsd", beta=1.0),
                               _np_divergence(s, t, "reverse_kl"), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="loss.beta=1.5"):
        losses.per_token_divergence(s, t, kind="jsd", beta=1.5)


def test_sampled_token_gradient_is_reinforce():
    s = jnp.asarray([-1.0, -2.0]); t = jnp.asarray([-1.5, -1.0])
    g = jax.grad(lambda x: losses.sampled_token_loss(x, t).sum())(s)
    np.testing.assert_allclose(np.asarray(g), np.asarray(s - t))


def test_loss_mask_skips_first_tokens():
    cm = jnp.asarray([[1, 1, 1, 1, 1, 0], [1, 1, 0, 0, 0, 0]])
    np.testing.assert_array_equal(np.asarray(losses.loss_mask(cm, 3)),
                                  [[0, 0, 0, 1, 1, 0], [0, 0, 0, 0, 0, 0]])


def test_aggregation_by_hand():
    per_token = jnp.asarray([[1.0, 2.0, 3.0, 4.0], [10.0, 20.0, 30.0, 40.0], [5.0, 5.0, 5.0, 5.0]])
    mask = jnp.asarray([[1, 1, 0, 0], [0, 0, 0, 1], [0, 0, 0, 0]])
    # sequences: mean(1,2)=1.5, 40, (no tokens) 0 -> mean over 3 sequences
    np.testing.assert_allclose(losses.aggregate(per_token, mask, "sequence_mean"), (1.5 + 40 + 0) / 3)
    np.testing.assert_allclose(losses.aggregate(per_token, mask, "token_mean"), (1 + 2 + 40) / 3)
    w = jnp.asarray([2.0, 0.5, 1.0])
    np.testing.assert_allclose(losses.aggregate(per_token, mask, "sequence_mean", w), (3.0 + 20.0) / 3)


def test_importance_weights_truncated_sequence_mean():
    train = jnp.log(jnp.asarray([[0.5, 0.5, 0.9]]))
    sampler = jnp.log(jnp.asarray([[0.5, 0.1, 0.3]]))
    mask = jnp.asarray([[1, 1, 0]])
    # ratios 1.0, 5.0 -> capped 2.0 ; third masked
    np.testing.assert_allclose(losses.importance_weights(train, sampler, mask, cap=2.0), [1.5], rtol=1e-6)


@pytest.mark.parametrize("kind,top_k", [("forward_kl", None), ("reverse_kl", None), ("jsd", 7)])
def test_chunked_equals_unchunked_value_and_gradient(kind, top_k):
    r = np.random.RandomState(3)
    B, T, D, V = 2, 13, 8, 40
    hs, ht = jnp.asarray(r.randn(B, T, D), jnp.float32), jnp.asarray(r.randn(B, T, D), jnp.float32)
    ws, wt = jnp.asarray(r.randn(D, V), jnp.float32), jnp.asarray(r.randn(D, V), jnp.float32)
    tgt = jnp.asarray(r.randint(0, V, (B, T)))
    mask = jnp.asarray(r.rand(B, T) > 0.3, jnp.float32)

    def chunked(ws, hs, chunk):
        st = losses.chunked_token_stats(hs, ws, tgt, ht, wt, chunk_size=chunk, kind=kind, top_k=top_k)
        return losses.aggregate(st["divergence"], mask)

    def direct(ws, hs):
        d = losses.per_token_divergence(hs @ ws, ht @ wt, kind=kind, top_k=top_k)
        return losses.aggregate(d, mask)

    want, want_g = jax.value_and_grad(direct, argnums=(0, 1))(ws, hs)
    for chunk in (1, 4, 13, 64):
        got, got_g = jax.value_and_grad(chunked, argnums=(0, 1))(ws, hs, chunk)
        np.testing.assert_allclose(got, want, rtol=1e-5)
        for a, b in zip(got_g, want_g):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("kind", ["forward_kl", "reverse_kl", "jsd"])
def test_non_finite_logits_give_non_finite_divergence(kind):
    """A diverged student (NaN logits) must not read as loss 0 (it did: NaN probabilities were masked)."""
    s, t = np.zeros((2, 5), np.float32), np.zeros((2, 5), np.float32)
    s[0, 1] = np.nan
    got = np.asarray(losses.per_token_divergence(s, t, kind=kind))
    assert np.isnan(got[0]) and np.isfinite(got[1])
