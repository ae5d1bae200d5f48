"""Weight-only quantization of a frozen LoRA base (QLoRA): int8 and NF4, dequantized per matmul.

A quantized projection `q` [L, in, out] becomes two leaves in the parameter table (`params.py`):
  int8: `q_qcodes` int8 [L, in, out] and `q_qscale` f32 [L, 1, out]: absmax per output column,
        W ~ codes * scale (scale = max |W[:, j]| / 127), as LLM.int8's weight side.
  nf4:  `q_qcodes` uint8 [L, in / 2, out] (two 4-bit codes per byte, rows 2i and 2i + 1) and
        `q_qscale` f32 [L, in / 64, out]: absmax per block of 64 input rows, W ~ NF4[code] * scale
        with the 16 NormalFloat levels of QLoRA (Dettmers et al. 2023), rounding to the nearest.
Embeddings, norms, biases and the LM head stay in the base dtype (as bitsandbytes does).
Quantizing happens once, on load, leaf by leaf (`quantize_leaf` frees each full-precision leaf).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

KINDS = ("int8", "nf4")
NF4_BLOCK = 64
# QLoRA's NF4 code book (bitsandbytes `NF4` table): the 16 levels in [-1, 1].
NF4_LEVELS = np.array([
    -1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453, -0.28444138169288635,
    -0.18477343022823334, -0.09105003625154495, 0.0, 0.07958029955625534, 0.16093020141124725,
    0.24611230194568634, 0.33791524171829224, 0.44070982933044434, 0.5626170039176941,
    0.7229568362236023, 1.0], np.float32)


def code_shapes(kind: str, shape: tuple[int, ...]) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(codes shape, scale shape) of a weight [..., in, out]."""
    *lead, d_in, d_out = shape
    if kind == "int8":
        return (*lead, d_in, d_out), (*lead, 1, d_out)
    return (*lead, d_in // 2, d_out), (*lead, d_in // NF4_BLOCK, d_out)


def code_dtype(kind: str):
    return jnp.int8 if kind == "int8" else jnp.uint8


def check_shape(kind: str, name: str, d_in: int) -> str | None:
    """An error message when a projection's input width cannot be quantized with `kind`."""
    if kind == "nf4" and d_in % NF4_BLOCK:
        return f"{name}: input width {d_in} is not a multiple of the NF4 block {NF4_BLOCK}"
    return None


def quantize(w: jax.Array, kind: str) -> tuple[jax.Array, jax.Array]:
    """w [..., in, out] -> (codes, scale)."""
    w = w.astype(jnp.float32)
    if kind == "int8":
        scale = jnp.max(jnp.abs(w), axis=-2, keepdims=True) / 127.0
        safe = jnp.where(scale > 0, scale, 1.0)
        return jnp.clip(jnp.round(w / safe), -127, 127).astype(jnp.int8), scale
    *lead, d_in, d_out = w.shape
    blocks = w.reshape(*lead, d_in // NF4_BLOCK, NF4_BLOCK, d_out)
    scale = jnp.max(jnp.abs(blocks), axis=-2)  # [..., in / 64, out]
    safe = jnp.where(scale > 0, scale, 1.0)
    normed = blocks / safe[..., None, :]
    levels = jnp.asarray(NF4_LEVELS)
    codes = jnp.argmin(jnp.abs(normed[..., None] - levels), axis=-1).astype(jnp.uint8)
    codes = codes.reshape(*lead, d_in // 2, 2, d_out)
    return (codes[..., 0, :] << 4) | codes[..., 1, :], scale


def dequantize(codes: jax.Array, scale: jax.Array, kind: str, dtype) -> jax.Array:
    """(codes, scale) -> w [..., in, out] in `dtype` (inside the jitted forward, one layer at a time)."""
    if kind == "int8":
        return (codes.astype(jnp.float32) * scale).astype(dtype)
    *lead, half, d_out = codes.shape
    pairs = jnp.stack([codes >> 4, codes & 15], axis=-2).reshape(*lead, 2 * half, d_out)
    values = jnp.asarray(NF4_LEVELS)[pairs.astype(jnp.int32)]
    blocks = values.reshape(*lead, 2 * half // NF4_BLOCK, NF4_BLOCK, d_out) * scale[..., None, :]
    return blocks.reshape(*lead, 2 * half, d_out).astype(dtype)


def quantize_leaf(w: jax.Array, kind: str, shardings) -> tuple[jax.Array, jax.Array]:
    """Quantizes one loaded weight and frees it, so the full-precision base is never held whole
    next to the quantized one (donation would not reuse it: the outputs are smaller)."""
    out = jax.jit(quantize, static_argnums=1, out_shardings=shardings)(w, kind)
    jax.block_until_ready(out)
    w.delete()
    return out
