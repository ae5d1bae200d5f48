"""The decoder (Qwen2/2.5/3, Llama) in Flax NNX, used functionally.

Layer parameters are stacked on a leading `layers` axis so the forward pass can `lax.scan`
over them (one compiled layer body: compile time does not grow with depth at 7B). The module
is split once (`nnx.split`) and every jitted function merges a plain params dict back in.

Call forms (all pure given params):
  hidden_states(tokens, positions, attention_mask)             -> (h [B,T,D], None)
  hidden_states(tokens, positions, attention_mask, cache=...)  -> (h, new_cache)
  logits(h)                                                     -> fp32 [B,T,V]
With a cache, `attention_mask` is the key-valid mask over the whole cache buffer [B, S] and
the new keys/values are written at slots [cache_index, cache_index + T).
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from flax import nnx

from sdft_jax.model import rope
from sdft_jax.model.config import ModelConfig

_MASK_VALUE = -0.7 * float(jnp.finfo(jnp.float32).max)  # finite: fully-masked pad rows stay NaN-free

REMAT = {
    "full": jax.checkpoint_policies.nothing_saveable,
    "dots": jax.checkpoint_policies.checkpoint_dots,
    "dots_no_batch": jax.checkpoint_policies.checkpoint_dots_with_no_batch_dims,
}


def _normal(rngs, shape, dtype, std=0.02):
    return (std * jax.random.normal(rngs.params(), shape, jnp.float32)).astype(dtype)


class DecoderLayers(nnx.Module):
    """All decoder layers' parameters, stacked on axis 0."""

    def __init__(self, cfg: ModelConfig, rngs: nnx.Rngs):
        L, D, F, H = cfg.num_layers, cfg.hidden_size, cfg.intermediate_size, cfg.head_dim
        NH, KH = cfg.num_heads * H, cfg.num_kv_heads * H
        dt = jnp.dtype(cfg.param_dtype)
        self.attn_norm = nnx.Param(jnp.ones((L, D), dt))
        self.q = nnx.Param(_normal(rngs, (L, D, NH), dt))
        self.k = nnx.Param(_normal(rngs, (L, D, KH), dt))
        self.v = nnx.Param(_normal(rngs, (L, D, KH), dt))
        self.o = nnx.Param(_normal(rngs, (L, NH, D), dt))
        if cfg.qkv_bias:
            self.q_bias = nnx.Param(jnp.zeros((L, NH), dt))
            self.k_bias = nnx.Param(jnp.zeros((L, KH), dt))
            self.v_bias = nnx.Param(jnp.zeros((L, KH), dt))
        if cfg.o_bias:
            self.o_bias = nnx.Param(jnp.zeros((L, D), dt))
        if cfg.qk_norm:
            self.q_norm = nnx.Param(jnp.ones((L, H), dt))
            self.k_norm = nnx.Param(jnp.ones((L, H), dt))
        self.mlp_norm = nnx.Param(jnp.ones((L, D), dt))
        self.gate = nnx.Param(_normal(rngs, (L, D, F), dt))
        self.up = nnx.Param(_normal(rngs, (L, D, F), dt))
        self.down = nnx.Param(_normal(rngs, (L, F, D), dt))


class Transformer(nnx.Module):
    def __init__(self, cfg: ModelConfig, *, rngs: nnx.Rngs):
        self.cfg = cfg
        dt = jnp.dtype(cfg.param_dtype)
        self.embed = nnx.Param(_normal(rngs, (cfg.vocab_size, cfg.hidden_size), dt))
        self.layers = DecoderLayers(cfg, rngs)
        self.final_norm = nnx.Param(jnp.ones((cfg.hidden_size,), dt))
        if not cfg.tie_word_embeddings:
            self.lm_head = nnx.Param(_normal(rngs, (cfg.hidden_size, cfg.vocab_size), dt))

    # ---- pieces the SDFT loss uses separately (LM head applied per chunk of positions)
    def head_weights(self) -> jnp.ndarray:
        """[D, V] in the compute dtype."""
        w = self.embed[...].T if self.cfg.tie_word_embeddings else self.lm_head[...]
        return w.astype(self.cfg.dtype)

    def logits(self, h: jnp.ndarray) -> jnp.ndarray:
        return jnp.einsum("...d,dv->...v", h, self.head_weights(),
                          preferred_element_type=jnp.float32)

    def hidden_states(self, tokens, positions=None, attention_mask=None, cache=None):
        cfg = self.cfg
        B, T = tokens.shape
        if attention_mask is None:
            attention_mask = jnp.ones((B, T) if cache is None else cache["k"].shape[1:3], jnp.bool_)
        attention_mask = attention_mask.astype(jnp.bool_)
        if positions is None:
            if cache is not None:
                raise ValueError("positions are required when decoding with a cache")
            positions = default_positions(attention_mask)
        sin, cos = rope.sin_cos(positions, cfg)
        x = jnp.take(self.embed[...], tokens, axis=0).astype(cfg.dtype)

        if cache is None:
            q_slots = jnp.arange(T)
            key_slots = jnp.arange(T)
        else:
            q_slots = cache["index"] + jnp.arange(T)
            key_slots = jnp.arange(cache["k"].shape[2])
        # [B, T, S]: causal in buffer slots, and only keys that hold real tokens.
        mask = (key_slots[None, None, :] <= q_slots[None, :, None]) & attention_mask[:, None, :]

        layer_fn = functools.partial(_decoder_layer, cfg, sin=sin, cos=cos, mask=mask)
        if cfg.remat != "none":
            layer_fn = jax.checkpoint(layer_fn, policy=REMAT[cfg.remat])
        layer_params = nnx.to_pure_dict(nnx.state(self.layers, nnx.Param))

        if cache is None:
            def body(h, p):
                h, _ = layer_fn(p, h, None)
                return h, None
            if cfg.scan_layers:
                x, _ = jax.lax.scan(body, x, layer_params)
            else:
                for i in range(cfg.num_layers):
                    x, _ = body(x, jax.tree.map(lambda a: a[i], layer_params))
            new_cache = None
        else:
            def body(carry, inputs):
                h, ck, cv = carry
                p, i = inputs
                kv = (ck[i], cv[i], cache["index"])
                h, (k_i, v_i) = layer_fn(p, h, kv)
                ck = jax.lax.dynamic_update_index_in_dim(ck, k_i, i, 0)
                cv = jax.lax.dynamic_update_index_in_dim(cv, v_i, i, 0)
                return (h, ck, cv), None
            carry = (x, cache["k"], cache["v"])
            if cfg.scan_layers:
                carry, _ = jax.lax.scan(body, carry, (layer_params, jnp.arange(cfg.num_layers)))
            else:
                for i in range(cfg.num_layers):
                    carry, _ = body(carry, (jax.tree.map(lambda a: a[i], layer_params), i))
            x, ck, cv = carry
            new_cache = {"k": ck, "v": cv, "index": cache["index"] + T}
        h = rms_norm(x, self.final_norm[...], cfg.rms_norm_eps)
        return h, new_cache

    def __call__(self, tokens, positions=None, attention_mask=None):
        h, _ = self.hidden_states(tokens, positions, attention_mask)
        return self.logits(h)


def default_positions(attention_mask: jnp.ndarray) -> jnp.ndarray:
    """Left padding: the first real token is position 0 (pads get 0 too, they are masked)."""
    return jnp.maximum(jnp.cumsum(attention_mask.astype(jnp.int32), axis=-1) - 1, 0)


def init_cache(cfg: ModelConfig, batch: int, length: int, dtype=None) -> dict:
    shape = (cfg.num_layers, batch, length, cfg.num_kv_heads, cfg.head_dim)
    dtype = dtype or cfg.dtype
    return {"k": jnp.zeros(shape, dtype), "v": jnp.zeros(shape, dtype), "index": jnp.zeros((), jnp.int32)}


def rms_norm(x, weight, eps):
    xf = x.astype(jnp.float32)
    xf = xf * jax.lax.rsqrt(jnp.mean(xf * xf, axis=-1, keepdims=True) + eps)
    return weight.astype(x.dtype) * xf.astype(x.dtype)


def _dense(x, w, b=None):
    y = jnp.einsum("btd,df->btf", x, w.astype(x.dtype))
    return y if b is None else y + b.astype(x.dtype)


def _decoder_layer(cfg: ModelConfig, p: dict, x, kv, *, sin, cos, mask):
    """One pre-norm decoder layer. kv = (cache_k [B,S,K,H], cache_v, write index) or None."""
    B, T, _ = x.shape
    H, N, K = cfg.head_dim, cfg.num_heads, cfg.num_kv_heads
    h = rms_norm(x, p["attn_norm"], cfg.rms_norm_eps)
    q = _dense(h, p["q"], p.get("q_bias")).reshape(B, T, N, H)
    k = _dense(h, p["k"], p.get("k_bias")).reshape(B, T, K, H)
    v = _dense(h, p["v"], p.get("v_bias")).reshape(B, T, K, H)
    if cfg.qk_norm:
        q = rms_norm(q, p["q_norm"], cfg.rms_norm_eps)
        k = rms_norm(k, p["k_norm"], cfg.rms_norm_eps)
    q = rope.apply_rope(q, sin, cos)
    k = rope.apply_rope(k, sin, cos)
    new_kv = None
    if kv is not None:
        cache_k, cache_v, index = kv
        k = jax.lax.dynamic_update_slice_in_dim(cache_k, k.astype(cache_k.dtype), index, axis=1)
        v = jax.lax.dynamic_update_slice_in_dim(cache_v, v.astype(cache_v.dtype), index, axis=1)
        new_kv = (k, v)
    # Without a cache query slot i attends to key slots <= i only: skip the masked triangle.
    attend = causal_block_attention if kv is None else _attention
    attn = attend(q, k.astype(q.dtype), v.astype(q.dtype), mask, cfg)
    x = x + _dense(attn.reshape(B, T, N * H), p["o"], p.get("o_bias"))
    h = rms_norm(x, p["mlp_norm"], cfg.rms_norm_eps)
    mlp = jax.nn.silu(_dense(h, p["gate"])) * _dense(h, p["up"])
    x = x + _dense(mlp, p["down"])
    return x, new_kv


QUERY_BLOCK = 256


def causal_block_attention(q, k, v, mask, cfg: ModelConfig, block: int | None = None):
    """Causal attention in query blocks of `block`: block [s, e) scores only keys [0, e), so the
    masked upper triangle is neither computed nor stored (at T=2048 and block 256, 56% of the
    full [T, T] scores). q, k, v share slots 0..T-1; mask [B, T, T] as for `_attention`."""
    T, block = q.shape[1], block or QUERY_BLOCK
    if T <= block:
        return _attention(q, k, v, mask, cfg)
    outs = []
    for s in range(0, T, block):
        e = min(s + block, T)
        outs.append(_attention(q[:, s:e], k[:, :e], v[:, :e], mask[:, s:e, :e], cfg))
    return jnp.concatenate(outs, axis=1)


def _attention(q, k, v, mask, cfg: ModelConfig):
    """Grouped-query attention. q [B,T,N,H]; k, v [B,S,K,H]; mask [B,T,S] bool."""
    B, T, N, H = q.shape
    K = k.shape[2]
    q = q.reshape(B, T, K, N // K, H)
    scores = jnp.einsum("btkgh,bskh->bkgts", q, k, preferred_element_type=jnp.float32)
    scores = scores * (H ** -0.5)
    scores = jnp.where(mask[:, None, None, :, :], scores, _MASK_VALUE)
    probs = jax.nn.softmax(scores, axis=-1).astype(v.dtype)
    out = jnp.einsum("bkgts,bskh->btkgh", probs, v)
    return out.reshape(B, T, N, H)
