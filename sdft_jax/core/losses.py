"""Pure SDFT divergences, masks and chunked evaluation (fp32 math throughout).

`per_token_divergence(student_logits, teacher_logits, kind=...)` -> [..., T]:
  forward_kl  sum_v p_T (log p_T - log p_S)      DEFAULT: produced every number in the paper
  reverse_kl  sum_v p_S (log p_S - log p_T)      what the paper's text writes
  jsd         beta KL(p_T||M) + (1-beta) KL(p_S||M),  M = beta p_T + (1-beta) p_S   (GKD form);
              beta 0 = forward_kl, beta 1 = reverse_kl (the released trainer's alpha)
  top_k       both distributions restricted to the top-k tokens of the teacher (or student)
              plus ONE tail bucket with each side's remaining mass, then the chosen kind.
`sampled_token_loss` is the REINFORCE form on the sampled tokens (an ablation).

`chunked_token_stats` applies the LM head to chunks of positions inside a rematerialized
`lax.map`, so the [B, T, V] fp32 logits never exist whole, not even for the backward pass.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

KINDS = ("forward_kl", "reverse_kl", "jsd")
AGGREGATIONS = ("sequence_mean", "token_mean")


def log_probs(logits: jax.Array, temperature: float = 1.0) -> jax.Array:
    return jax.nn.log_softmax(logits.astype(jnp.float32) / temperature, axis=-1)


def _kl(lp_a: jax.Array, lp_b: jax.Array) -> jax.Array:
    """KL(a || b) over the last axis from log-probs; 0 * (anything) where p_a == 0. A NaN anywhere
    stays NaN (a diverged run must not read as loss 0)."""
    p_a = jnp.exp(lp_a)
    return jnp.sum(jnp.where(p_a == 0, 0.0, p_a * (lp_a - lp_b)), axis=-1)


def divergence_from_log_probs(lp_s: jax.Array, lp_t: jax.Array, kind: str, beta: float = 0.5) -> jax.Array:
    if kind == "forward_kl":
        return _kl(lp_t, lp_s)
    if kind == "reverse_kl":
        return _kl(lp_s, lp_t)
    if kind == "jsd":  # beta 0 / 1: M equals one side, and the limit is that KL (as GKD / the paper's code)
        if beta == 0.0:
            return _kl(lp_t, lp_s)
        if beta == 1.0:
            return _kl(lp_s, lp_t)
        if not 0.0 < beta < 1.0:
            raise ValueError(f"loss.beta={beta} must be in [0, 1]")
        lp_m = jnp.logaddexp(jnp.log(beta) + lp_t, jnp.log1p(-beta) + lp_s)
        return beta * _kl(lp_t, lp_m) + (1.0 - beta) * _kl(lp_s, lp_m)
    raise ValueError(f"loss.kind={kind!r}; expected one of {KINDS} (or 'sampled_token')")


def _top_k_with_tail(lp_s, lp_t, top_k: int, support: str):
    """Restricts both log-prob vectors to top-k (+1 tail bucket holding the remaining mass)."""
    if support not in ("teacher", "student"):
        raise ValueError(f"loss.top_k_support={support!r}; expected 'teacher' or 'student'")
    ref = jax.lax.stop_gradient(lp_t if support == "teacher" else lp_s)
    _, idx = jax.lax.top_k(ref, top_k)

    def restrict(lp):
        head = jnp.take_along_axis(lp, idx, axis=-1)
        head_mass = jnp.sum(jnp.exp(head), axis=-1, keepdims=True)
        tail = jnp.log(jnp.clip(1.0 - head_mass, 1e-30, 1.0))  # clip: fp32 mass may round above 1
        return jnp.concatenate([head, tail], axis=-1)

    return restrict(lp_s), restrict(lp_t)


def per_token_divergence(student_logits: jax.Array, teacher_logits: jax.Array, *, kind: str = "forward_kl",
                         beta: float = 0.5, top_k: int | None = None, top_k_support: str = "teacher",
                         temperature: float = 1.0) -> jax.Array:
    """[..., V] logits -> [...] divergence per position. The teacher is NOT stop-gradiented here:
    callers decide (the train step feeds stop_gradient(teacher))."""
    lp_s = log_probs(student_logits, temperature)
    lp_t = log_probs(teacher_logits, temperature)
    if top_k and top_k < lp_s.shape[-1]:
        lp_s, lp_t = _top_k_with_tail(lp_s, lp_t, top_k, top_k_support)
    return divergence_from_log_probs(lp_s, lp_t, kind, beta)


def sampled_token_loss(student_logp: jax.Array, teacher_logp: jax.Array) -> jax.Array:
    """REINFORCE surrogate on the sampled tokens: its gradient is the single-sample estimate of
    grad KL(p_S || p_T), i.e. sg(log p_S(y) - log p_T(y)) * grad log p_S(y)."""
    advantage = jax.lax.stop_gradient(student_logp - teacher_logp)
    return advantage * student_logp


# ----------------------------------------------------------------------------- masks
def loss_mask(completion_mask: jax.Array, skip_first_tokens: int = 0) -> jax.Array:
    """Completion mask with the first `skip_first_tokens` completion positions zeroed (they stay
    attention context). completion_mask [B, N] starts at the first completion token."""
    positions = jnp.arange(completion_mask.shape[-1])
    return (completion_mask * (positions >= skip_first_tokens)).astype(jnp.float32)


def aggregate(per_token: jax.Array, mask: jax.Array, mode: str = "sequence_mean",
              seq_weights: jax.Array | None = None, normalizer: jax.Array | None = None) -> jax.Array:
    """sequence_mean: mean over tokens of each sequence, then mean over sequences (paper code;
    a sequence with no loss token contributes 0). token_mean: mean over all loss tokens.
    `normalizer` overrides the denominator (number of sequences / tokens of the GLOBAL batch),
    so micro-batch sums add up exactly to the full-batch loss."""
    mask = mask.astype(jnp.float32)
    if mode == "sequence_mean":
        per_seq = jnp.sum(per_token * mask, -1) / jnp.maximum(jnp.sum(mask, -1), 1.0)
        if seq_weights is not None:
            per_seq = per_seq * seq_weights
        denom = per_seq.shape[0] if normalizer is None else normalizer
        return jnp.sum(per_seq) / denom
    if mode == "token_mean":
        weighted = per_token * mask
        if seq_weights is not None:
            weighted = weighted * seq_weights[:, None]
        denom = jnp.maximum(jnp.sum(mask), 1.0) if normalizer is None else normalizer
        return jnp.sum(weighted) / denom
    raise ValueError(f"loss.aggregation={mode!r}; expected one of {AGGREGATIONS}")


def importance_weights(train_logp: jax.Array, sampler_logp: jax.Array, mask: jax.Array,
                       cap: float = 2.0) -> jax.Array:
    """Per-sequence truncated importance weight: mean over loss tokens of min(exp(diff), cap)."""
    ratio = jnp.minimum(jnp.exp(train_logp - sampler_logp), cap)
    mask = mask.astype(jnp.float32)
    return jax.lax.stop_gradient(jnp.sum(ratio * mask, -1) / jnp.maximum(jnp.sum(mask, -1), 1.0))


# ----------------------------------------------------------------------------- chunked evaluation
def token_stats(student_logits, teacher_logits, targets, *, kind, beta, top_k, top_k_support,
                temperature) -> dict[str, jax.Array]:
    """Per-position loss ingredients and cheap metrics for one chunk ([..., V] logits)."""
    lp_s = log_probs(student_logits, temperature)
    out = {"student_logp": jnp.take_along_axis(lp_s, targets[..., None], axis=-1)[..., 0],
           "student_entropy": -jnp.sum(jnp.exp(lp_s) * lp_s, axis=-1)}
    if teacher_logits is None:
        return out
    lp_t = log_probs(teacher_logits, temperature)
    out["teacher_logp"] = jnp.take_along_axis(lp_t, targets[..., None], axis=-1)[..., 0]
    out["forward_kl"] = _kl(lp_t, lp_s)
    out["reverse_kl"] = _kl(lp_s, lp_t)
    if kind == "forward_kl" and not top_k:
        out["divergence"] = out["forward_kl"]
    elif kind == "reverse_kl" and not top_k:
        out["divergence"] = out["reverse_kl"]
    elif kind != "sampled_token":
        a, b = (_top_k_with_tail(lp_s, lp_t, top_k, top_k_support)
                if top_k and top_k < lp_s.shape[-1] else (lp_s, lp_t))
        out["divergence"] = divergence_from_log_probs(a, b, kind, beta)
    return out


def chunked_token_stats(student_hidden, student_head, targets, teacher_hidden=None, teacher_head=None, *,
                        chunk_size: int, kind: str = "forward_kl", beta: float = 0.5, top_k: int | None = None,
                        top_k_support: str = "teacher", temperature: float = 1.0) -> dict[str, jax.Array]:
    """hidden [B, T, D], head [D, V], targets [B, T] -> dict of [B, T] per-token stats.

    The head is applied per chunk of `chunk_size` positions inside `lax.map`; each chunk is
    rematerialized in the backward pass, so at most one chunk's [B, chunk, V] logits is live."""
    B, T, _ = student_hidden.shape
    chunk = min(chunk_size, T) if chunk_size > 0 else T
    pad = (-T) % chunk
    n = (T + pad) // chunk

    def split(x):
        x = jnp.pad(x, [(0, 0), (0, pad)] + [(0, 0)] * (x.ndim - 2))
        return jnp.swapaxes(x.reshape(B, n, chunk, *x.shape[2:]), 0, 1)

    has_teacher = teacher_hidden is not None

    @jax.checkpoint
    def body(xs):
        s_h, t_h, tgt = xs
        s_logits = jnp.einsum("btd,dv->btv", s_h, student_head, preferred_element_type=jnp.float32)
        t_logits = (jnp.einsum("btd,dv->btv", t_h, teacher_head, preferred_element_type=jnp.float32)
                    if has_teacher else None)
        return token_stats(s_logits, t_logits, tgt, kind=kind, beta=beta, top_k=top_k,
                           top_k_support=top_k_support, temperature=temperature)

    xs = (split(student_hidden), split(teacher_hidden) if has_teacher else None, split(targets))
    stats = jax.lax.map(body, xs)
    return {k: jnp.swapaxes(v, 0, 1).reshape(B, n * chunk)[:, :T] for k, v in stats.items()}
