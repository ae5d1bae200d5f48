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

from sdft_jax.model import attention, params, quant, rope
from sdft_jax.model.config import ModelConfig

_MASK_VALUE = -0.7 * float(jnp.finfo(jnp.float32).max)  # finite: fully-masked pad rows stay NaN-free

REMAT = {
    "full": jax.checkpoint_policies.nothing_saveable,
    "dots": jax.checkpoint_policies.checkpoint_dots,
    "dots_no_batch": jax.checkpoint_policies.checkpoint_dots_with_no_batch_dims,
}


def _normal(rngs, shape, dtype, std=0.02):
    return (std * jax.random.normal(rngs.params(), shape, jnp.float32)).astype(dtype)


def _make(spec, cfg: ModelConfig, rngs: nnx.Rngs, stacked: bool) -> nnx.Param:
    shape = ((cfg.num_layers,) if stacked else ()) + spec.shape(cfg)
    # Adapters train in fp32 (as PEFT's); a quantized base's codes are integers, its scales fp32.
    dt = jnp.dtype("float32" if spec.adapter or spec.quantized == "scale" else
                   quant.code_dtype(cfg.base_quant) if spec.quantized else cfg.param_dtype)
    if spec.init == "normal":
        return nnx.Param(_normal(rngs, shape, dt))
    if spec.init == "lora_a":
        bound = shape[-2] ** -0.5
        return nnx.Param(jax.random.uniform(rngs.params(), shape, dt, -bound, bound))
    return nnx.Param((jnp.ones if spec.init == "ones" else jnp.zeros)(shape, dt))


class DecoderLayers(nnx.Module):
    """All decoder layers' parameters (params.LAYER), stacked on axis 0."""

    def __init__(self, cfg: ModelConfig, rngs: nnx.Rngs):
        for name, spec in params.LAYER.items():
            if spec.present(cfg):
                setattr(self, name, _make(spec, cfg, rngs, stacked=True))


class Transformer(nnx.Module):
    def __init__(self, cfg: ModelConfig, *, rngs: nnx.Rngs):
        self.cfg = cfg
        self.embed = _make(params.TOP["embed"], cfg, rngs, stacked=False)
        self.layers = DecoderLayers(cfg, rngs)
        self.final_norm = _make(params.TOP["final_norm"], cfg, rngs, stacked=False)
        if params.TOP["lm_head"].present(cfg):
            self.lm_head = _make(params.TOP["lm_head"], cfg, rngs, stacked=False)

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

        # One layer body for every form: with a cache it reads and writes layer i's keys/values.
        def body(carry, inputs):
            h_BxTxD, ck, cv = carry
            p, i = inputs
            kv = None if cache is None else (ck[i], cv[i], cache["index"])
            h_BxTxD, new_kv = layer_fn(p, h_BxTxD, kv)
            if cache is not None:
                ck = jax.lax.dynamic_update_index_in_dim(ck, new_kv[0], i, 0)
                cv = jax.lax.dynamic_update_index_in_dim(cv, new_kv[1], i, 0)
            return (h_BxTxD, ck, cv), None

        carry = (x, None, None) if cache is None else (x, cache["k"], cache["v"])
        if cfg.scan_layers:
            carry, _ = jax.lax.scan(body, carry, (layer_params, jnp.arange(cfg.num_layers)))
        else:
            for i in range(cfg.num_layers):
                carry, _ = body(carry, (jax.tree.map(lambda a: a[i], layer_params), i))
        x, ck, cv = carry
        new_cache = None if cache is None else {"k": ck, "v": cv, "index": cache["index"] + T}
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


def _proj(cfg: ModelConfig, p: dict, name: str, x_BxTxD):
    """x W (+ bias) (+ (alpha / r) x A B with LoRA) for the projection `name` of layer params `p`;
    W is stored, or dequantized from a QLoRA base's codes (quant.py) one layer at a time."""
    w = p[name] if name in p else quant.dequantize(p[f"{name}_qcodes"], p[f"{name}_qscale"], cfg.base_quant,
                                                   x_BxTxD.dtype)
    y_BxTxF = jnp.einsum("btd,df->btf", x_BxTxD, w.astype(x_BxTxD.dtype))
    if f"{name}_lora_a" in p:
        a_Dxr, b_rxF = (p[f"{name}_lora_{f}"].astype(x_BxTxD.dtype) for f in "ab")
        y_BxTxF = y_BxTxF + cfg.lora_scale * jnp.einsum("btr,rf->btf", jnp.einsum("btd,dr->btr", x_BxTxD, a_Dxr),
                                                        b_rxF)
    bias = p.get(f"{name}_bias")
    return y_BxTxF if bias is None else y_BxTxF + bias.astype(x_BxTxD.dtype)


def _decoder_layer(cfg: ModelConfig, p: dict, x_BxTxD, kv, *, sin, cos, mask):
    """One pre-norm decoder layer. kv = (cache_k [B,S,K,H], cache_v, write index) or None.
    Shape letters: B batch, T query positions, S key slots, D model width, N query heads,
    K key/value heads, H head dim, F MLP width."""
    B, T, _ = x_BxTxD.shape
    H, N, K = cfg.head_dim, cfg.num_heads, cfg.num_kv_heads
    h_BxTxD = rms_norm(x_BxTxD, p["attn_norm"], cfg.rms_norm_eps)
    q_BxTxNxH = _proj(cfg, p, "q", h_BxTxD).reshape(B, T, N, H)
    k_BxTxKxH = _proj(cfg, p, "k", h_BxTxD).reshape(B, T, K, H)
    v_BxTxKxH = _proj(cfg, p, "v", h_BxTxD).reshape(B, T, K, H)
    if cfg.qk_norm:
        q_BxTxNxH = rms_norm(q_BxTxNxH, p["q_norm"], cfg.rms_norm_eps)
        k_BxTxKxH = rms_norm(k_BxTxKxH, p["k_norm"], cfg.rms_norm_eps)
    q_BxTxNxH = rope.apply_rope(q_BxTxNxH, sin, cos)
    k_BxSxKxH = rope.apply_rope(k_BxTxKxH, sin, cos)  # S = T without a cache
    v_BxSxKxH, new_kv = v_BxTxKxH, None
    if kv is not None:  # write this step's keys/values into the cache, attend over all its slots
        cache_k, cache_v, index = kv
        k_BxSxKxH = jax.lax.dynamic_update_slice_in_dim(cache_k, k_BxSxKxH.astype(cache_k.dtype), index, axis=1)
        v_BxSxKxH = jax.lax.dynamic_update_slice_in_dim(cache_v, v_BxSxKxH.astype(cache_v.dtype), index, axis=1)
        new_kv = (k_BxSxKxH, v_BxSxKxH)
    # Without a cache query slot i attends to key slots <= i only: skip the masked triangle (xla),
    # or hand the whole causal attention to a fused kernel (model/attention.py).
    attend = _attention if kv is not None else _CACHELESS[cfg.attention]
    attn_BxTxNxH = attend(q_BxTxNxH, k_BxSxKxH.astype(q_BxTxNxH.dtype), v_BxSxKxH.astype(q_BxTxNxH.dtype), mask, cfg)
    x_BxTxD = x_BxTxD + _proj(cfg, p, "o", attn_BxTxNxH.reshape(B, T, N * H))
    h_BxTxD = rms_norm(x_BxTxD, p["mlp_norm"], cfg.rms_norm_eps)
    mlp_BxTxF = jax.nn.silu(_proj(cfg, p, "gate", h_BxTxD)) * _proj(cfg, p, "up", h_BxTxD)
    return x_BxTxD + _proj(cfg, p, "down", mlp_BxTxF), new_kv


def causal_block_attention(q, k, v, mask, cfg: ModelConfig, block: int | None = None):
    """Causal attention in query blocks of `block`: block [s, e) scores only keys [0, e), so the
    masked upper triangle is neither computed nor stored (at T=2048 and block 256, 56% of the
    full [T, T] scores). q, k, v share slots 0..T-1; mask [B, T, T] as for `_attention`."""
    T, block = q.shape[1], block or cfg.query_block
    if T <= block:
        return _attention(q, k, v, mask, cfg)
    outs = []
    for s in range(0, T, block):
        e = min(s + block, T)
        outs.append(_attention(q[:, s:e], k[:, :e], v[:, :e], mask[:, s:e, :e], cfg))
    return jnp.concatenate(outs, axis=1)


def _attention(q_BxTxNxH, k_BxSxKxH, v_BxSxKxH, mask_BxTxS, cfg: ModelConfig):
    """Grouped-query attention: the N query heads form K groups of G = N // K sharing one key/value head."""
    B, T, N, H = q_BxTxNxH.shape
    K = k_BxSxKxH.shape[2]
    q_BxTxKxGxH = q_BxTxNxH.reshape(B, T, K, N // K, H)
    scores_BxKxGxTxS = jnp.einsum("btkgh,bskh->bkgts", q_BxTxKxGxH, k_BxSxKxH, preferred_element_type=jnp.float32)
    scores_BxKxGxTxS = scores_BxKxGxTxS * (H ** -0.5)
    scores_BxKxGxTxS = jnp.where(mask_BxTxS[:, None, None, :, :], scores_BxKxGxTxS, _MASK_VALUE)
    probs_BxKxGxTxS = jax.nn.softmax(scores_BxKxGxTxS, axis=-1).astype(v_BxSxKxH.dtype)
    out_BxTxKxGxH = jnp.einsum("bkgts,bskh->btkgh", probs_BxKxGxTxS, v_BxSxKxH)
    return out_BxTxKxGxH.reshape(B, T, N, H)


_CACHELESS = {
    "xla": causal_block_attention,
    "cudnn": lambda q, k, v, mask, cfg: attention.cudnn_attention(q, k, v, mask),
    "splash": lambda q, k, v, mask, cfg: attention.splash_attention(q, k, v, mask),
}
