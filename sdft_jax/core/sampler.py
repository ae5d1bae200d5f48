"""KV-cache generation: one prefill over the left-padded prompts, then a `lax.while_loop` decode
that stops as soon as every row has emitted a stop token (or `max_new_tokens` is reached).

Returns a `Rollout` with exactly what the trainer scores: the completion tokens, their mask
(1 up to and including the first stop token), the log-probability of each sampled token under
the sampling distribution (temperature / top-k / top-p applied) and under the unmodified model
at temperature 1 (for truncated importance correction).
"""
from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx

from sdft_jax.model.config import ModelConfig
from sdft_jax.model.transformer import default_positions, init_cache


@dataclasses.dataclass(frozen=True)
class SamplingConfig:
    max_new_tokens: int = 256
    temperature: float = 1.0  # 0 = greedy
    top_k: int = 0  # 0 = off
    top_p: float = 1.0  # 1 = off
    stop_ids: tuple[int, ...] = ()
    pad_id: int = 0
    # The decode loop is split into up to this many chunks of >= 64 steps; the KV cache holds only
    # the slots filled by a chunk's end and grows between chunks (1 = one P + N buffer throughout).
    decode_chunks: int = 8
    # The batch's rows are generated in this many sequential groups (one KV cache of B / groups rows
    # at a time): less memory, same tokens per group seed. 1 = all rows at once.
    rollout_batches: int = 1

    def __post_init__(self):
        if self.max_new_tokens < 1:
            raise ValueError(f"sampling.max_new_tokens={self.max_new_tokens} must be >= 1")
        if self.temperature < 0:
            raise ValueError(f"sampling.temperature={self.temperature} must be >= 0")
        if not 0.0 < self.top_p <= 1.0:
            raise ValueError(f"sampling.top_p={self.top_p} must be in (0, 1]")
        if self.top_k < 0:
            raise ValueError(f"sampling.top_k={self.top_k} must be >= 0")
        if self.decode_chunks < 1:
            raise ValueError(f"sampling.decode_chunks={self.decode_chunks} must be >= 1")
        if self.rollout_batches < 1:
            raise ValueError(f"sampling.rollout_batches={self.rollout_batches} must be >= 1")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0


class Rollout(NamedTuple):
    tokens: jax.Array  # [B, N] int32, pad after the stop token
    mask: jax.Array  # [B, N] int32, 1 up to and including the first stop token
    logprobs: jax.Array  # [B, N] fp32 under the sampling distribution (0 where masked; 0 for greedy)
    model_logprobs: jax.Array  # [B, N] fp32 under the model at temperature 1
    lengths: jax.Array  # [B] int32


def sampling_log_probs(logits: jax.Array, sc: SamplingConfig) -> jax.Array:
    """Log-probabilities of the sampling distribution over the vocabulary ([..., V], fp32).
    Truncated tokens get -inf."""
    logits = logits.astype(jnp.float32) / (sc.temperature if sc.temperature > 0 else 1.0)
    if sc.top_k and sc.top_k < logits.shape[-1]:
        kth = jax.lax.top_k(logits, sc.top_k)[0][..., -1:]
        logits = jnp.where(logits < kth, -jnp.inf, logits)
    if sc.top_p < 1.0:
        order = jnp.argsort(-logits, axis=-1)
        sorted_logits = jnp.take_along_axis(logits, order, axis=-1)
        probs = jax.nn.softmax(sorted_logits, axis=-1)
        mass_before = jnp.cumsum(probs, axis=-1) - probs
        keep_sorted = mass_before < sc.top_p  # the token that crosses top_p is kept
        keep = jnp.take_along_axis(keep_sorted, jnp.argsort(order, axis=-1), axis=-1)
        logits = jnp.where(keep, logits, -jnp.inf)
    return jax.nn.log_softmax(logits, axis=-1)


def _choose(logits: jax.Array, key: jax.Array, sc: SamplingConfig):
    """-> (token [B], sampling logprob [B], model logprob at T=1 [B])."""
    model_lp = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
    if sc.greedy:
        tok = jnp.argmax(logits, axis=-1)
        sample_lp = jnp.zeros(tok.shape, jnp.float32)
    else:
        lp = sampling_log_probs(logits, sc)
        tok = jax.random.categorical(key, lp, axis=-1)
        sample_lp = jnp.take_along_axis(lp, tok[:, None], axis=-1)[:, 0]
    tok = tok.astype(jnp.int32)
    return tok, sample_lp, jnp.take_along_axis(model_lp, tok[:, None], axis=-1)[:, 0]


def make_generate(graphdef: Any, cfg: ModelConfig, sc: SamplingConfig, *, cache_sharding=None,
                  return_logits: bool = False):
    """Returns jitted generate(params, prompt_tokens [B,P], prompt_mask [B,P], key) -> Rollout
    (and fp32 logits [B, N, V] when return_logits, for tests).

    Prompts must be LEFT-padded. One program is compiled per (B, P) shape: pad prompts to a
    few length buckets (data/buckets.py)."""
    return jax.jit(build_generate(graphdef, cfg, sc, cache_sharding=cache_sharding, return_logits=return_logits))


def build_generate(graphdef: Any, cfg: ModelConfig, sc: SamplingConfig, *, cache_sharding=None,
                   return_logits: bool = False):
    """The un-jitted generate of `make_generate`, for programs that contain a rollout (step.py)."""
    stop_ids = jnp.asarray(sc.stop_ids if sc.stop_ids else (-1,), jnp.int32)
    N = sc.max_new_tokens

    def generate(params, prompt_tokens, prompt_mask, key):
        if cfg.param_dtype != cfg.dtype:
            # fp32 master weights: decode from one compute-dtype copy made here. Without the barrier
            # XLA sinks the converts into the decode loop and reads the fp32 weights every token.
            params = jax.lax.optimization_barrier(jax.tree.map(
                lambda x: x.astype(cfg.dtype) if jnp.issubdtype(x.dtype, jnp.floating) else x, params))
        G = sc.rollout_batches
        if G == 1:
            return generate_rows(params, prompt_tokens, prompt_mask, key)
        B = prompt_tokens.shape[0]
        if B % G:
            raise ValueError(f"a batch of {B} prompts is not divisible by sampling.rollout_batches={G}")
        groups = jax.tree.map(lambda x: x.reshape(G, B // G, *x.shape[1:]), (prompt_tokens, prompt_mask))
        out = jax.lax.map(lambda g: generate_rows(params, g[0], g[1], jax.random.fold_in(key, 1_000_003 + g[2])),
                          (*groups, jnp.arange(G)))
        return jax.tree.map(lambda x: x.reshape(B, *x.shape[2:]), out)

    def generate_rows(params, prompt_tokens, prompt_mask, key):
        model = nnx.merge(graphdef, params)
        B, P = prompt_tokens.shape
        prompt_mask = prompt_mask.astype(jnp.int32)
        ends = decode_chunk_ends(N, sc.decode_chunks)

        def sized(cache, kv_mask, length):
            """The cache and key mask padded with empty slots up to `length`."""
            grow = length - kv_mask.shape[1]
            pad = [(0, 0), (0, 0), (0, grow), (0, 0), (0, 0)]
            k, v = jnp.pad(cache["k"], pad), jnp.pad(cache["v"], pad)
            if cache_sharding is not None:
                k = jax.lax.with_sharding_constraint(k, cache_sharding)
                v = jax.lax.with_sharding_constraint(v, cache_sharding)
            return {**cache, "k": k, "v": v}, jnp.pad(kv_mask, [(0, 0), (0, grow)])

        cache, kv_mask = sized(init_cache(cfg, B, P), prompt_mask, P + ends[0])
        positions = default_positions(prompt_mask)
        h, cache = model.hidden_states(prompt_tokens.astype(jnp.int32), positions, kv_mask, cache)
        logits = model.logits(h[:, -1])
        next_pos = jnp.sum(prompt_mask, axis=1)  # position of the first completion token

        tok, slp, mlp = _choose(logits, jax.random.fold_in(key, 0), sc)
        zeros_i = jnp.zeros((B, N), jnp.int32)
        zeros_f = jnp.zeros((B, N), jnp.float32)
        state = dict(
            i=jnp.ones((), jnp.int32), cache=cache, kv_mask=kv_mask,
            tokens=zeros_i.at[:, 0].set(tok), slp=zeros_f.at[:, 0].set(slp), mlp=zeros_f.at[:, 0].set(mlp),
            done=jnp.isin(tok, stop_ids), alive=zeros_i.at[:, 0].set(1),
        )
        if return_logits:
            state["logits"] = jnp.zeros((B, N, logits.shape[-1]), jnp.float32).at[:, 0].set(logits)

        def body(s):
            i = s["i"]
            last = s["tokens"][:, i - 1]
            kv_mask = s["kv_mask"].at[:, P + i - 1].set(1)
            pos = (next_pos + i - 1)[:, None]
            h, cache = model.hidden_states(last[:, None], pos, kv_mask, s["cache"])
            logits = model.logits(h[:, 0])
            tok, slp, mlp = _choose(logits, jax.random.fold_in(key, i), sc)
            live = ~s["done"]
            tok = jnp.where(live, tok, sc.pad_id)
            out = dict(
                i=i + 1, cache=cache, kv_mask=kv_mask,
                tokens=s["tokens"].at[:, i].set(tok),
                slp=s["slp"].at[:, i].set(jnp.where(live, slp, 0.0)),
                mlp=s["mlp"].at[:, i].set(jnp.where(live, mlp, 0.0)),
                done=s["done"] | jnp.isin(tok, stop_ids), alive=s["alive"].at[:, i].set(live.astype(jnp.int32)),
            )
            if return_logits:
                out["logits"] = s["logits"].at[:, i].set(logits)
            return out

        s = state
        for j, end in enumerate(ends):  # steps [previous end, end) run on a cache of P + end slots
            if j:
                s["cache"], s["kv_mask"] = sized(s["cache"], s["kv_mask"], P + end)
            s = jax.lax.while_loop(lambda s, end=end: (s["i"] < end) & ~jnp.all(s["done"]), body, s)
        mask = s["alive"]
        rollout = Rollout(tokens=jnp.where(mask == 1, s["tokens"], sc.pad_id), mask=mask,
                          logprobs=s["slp"] * mask, model_logprobs=s["mlp"] * mask,
                          lengths=jnp.sum(mask, axis=1))
        return (rollout, s["logits"]) if return_logits else rollout

    return generate


def decode_chunk_ends(n: int, chunks: int, smallest: int = 64) -> list[int]:
    """Ends of the decode chunks over steps 1..n-1: equal chunks of at least `smallest` steps."""
    size = max(smallest, -(-n // chunks))
    return list(range(size, n, size)) + [n]
