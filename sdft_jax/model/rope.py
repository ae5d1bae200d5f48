"""Rotary position embeddings (HF "rotate_half" convention) with default/linear/llama3/yarn scaling.

Inverse frequencies are computed once in float64 NumPy from the static config; sin/cos are
computed in fp32 from the (traced) positions, never in bf16 (bf16 rounds position 257 to 256).
"""
from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np

from sdft_jax.model.config import ModelConfig


def inverse_frequencies(cfg: ModelConfig) -> tuple[np.ndarray, float]:
    """Returns (inv_freq [head_dim/2] float32, attention_factor applied to cos/sin)."""
    dim = cfg.head_dim
    base = cfg.rope_theta
    exponents = np.arange(0, dim, 2, dtype=np.float64) / dim
    inv_freq = 1.0 / (base ** exponents)
    scaling = cfg.rope_scaling_dict
    rope_type = scaling.get("rope_type", "default")
    attention_factor = 1.0
    if rope_type == "linear":
        inv_freq = inv_freq / scaling["factor"]
    elif rope_type == "llama3":
        inv_freq = _llama3(inv_freq, scaling)
    elif rope_type == "yarn":
        inv_freq, attention_factor = _yarn(inv_freq, scaling, cfg)
    return inv_freq.astype(np.float32), float(attention_factor)


def _llama3(inv_freq, s):
    factor, low, high = s["factor"], s["low_freq_factor"], s["high_freq_factor"]
    old_len = s["original_max_position_embeddings"]
    low_wavelen, high_wavelen = old_len / low, old_len / high
    wavelen = 2 * math.pi / inv_freq
    scaled = np.where(wavelen > low_wavelen, inv_freq / factor, inv_freq)
    smooth = (old_len / wavelen - low) / (high - low)
    smoothed = (1 - smooth) * scaled / factor + smooth * scaled
    medium = ~(wavelen < high_wavelen) & ~(wavelen > low_wavelen)
    return np.where(medium, smoothed, scaled)


def _yarn(inv_freq, s, cfg: ModelConfig):
    dim, base = cfg.head_dim, cfg.rope_theta
    orig = s["original_max_position_embeddings"]
    factor = s.get("factor") or cfg.max_position_embeddings / orig

    def mscale(scale, m=1.0):
        return 1.0 if scale <= 1 else 0.1 * m * math.log(scale) + 1.0

    attention_factor = s.get("attention_factor")
    if attention_factor is None:
        if s.get("mscale") and s.get("mscale_all_dim"):
            attention_factor = mscale(factor, s["mscale"]) / mscale(factor, s["mscale_all_dim"])
        else:
            attention_factor = mscale(factor)
    beta_fast, beta_slow = s.get("beta_fast") or 32, s.get("beta_slow") or 1

    def correction_dim(rotations):
        return dim * math.log(orig / (rotations * 2 * math.pi)) / (2 * math.log(base))

    low, high = correction_dim(beta_fast), correction_dim(beta_slow)
    if s.get("truncate", True):
        low, high = math.floor(low), math.ceil(high)
    low, high = max(low, 0), min(high, dim - 1)
    if low == high:
        high += 0.001
    ramp = np.clip((np.arange(dim // 2, dtype=np.float64) - low) / (high - low), 0, 1)
    extrapolation_weight = 1 - ramp
    interpolated = inv_freq / factor
    return interpolated * (1 - extrapolation_weight) + inv_freq * extrapolation_weight, attention_factor


def sin_cos(positions: jnp.ndarray, cfg: ModelConfig) -> tuple[jnp.ndarray, jnp.ndarray]:
    """positions [B, T] int -> (sin, cos) [B, T, head_dim] fp32."""
    inv_freq, attention_factor = inverse_frequencies(cfg)
    angles = positions.astype(jnp.float32)[..., None] * jnp.asarray(inv_freq)
    angles = jnp.concatenate([angles, angles], axis=-1)
    return jnp.sin(angles) * attention_factor, jnp.cos(angles) * attention_factor


def apply_rope(x: jnp.ndarray, sin: jnp.ndarray, cos: jnp.ndarray) -> jnp.ndarray:
    """x [B, T, heads, head_dim]; sin/cos [B, T, head_dim]."""
    half = x.shape[-1] // 2
    xf = x.astype(jnp.float32)
    rotated = jnp.concatenate([-xf[..., half:], xf[..., :half]], axis=-1)
    out = xf * cos[:, :, None, :] + rotated * sin[:, :, None, :]
    return out.astype(x.dtype)
