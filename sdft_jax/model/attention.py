"""Fused attention kernels for the cache-less forwards (the teacher and student passes of a step):
`model.attention` = auto | xla | cudnn | splash.

  xla     the model's own query-blocked attention (transformer.causal_block_attention): every platform.
  cudnn   jax.nn.dot_product_attention(implementation="cudnn"): cuDNN's fused flash attention, GPU.
  splash  the Pallas TPU splash-attention kernel (jax.experimental.pallas.ops.tpu.splash_attention),
          TPU; runs in Pallas interpret mode elsewhere (slow: for tests).
  auto    cudnn on GPU, splash on TPU, xla on CPU.

Left padding: a query attends to the real keys at or before it. A pad query has no such key, so
here it attends to itself (cuDNN or splash would otherwise normalize an empty row); its output is
never used. The decode loop (with a KV cache) always uses xla.
"""
from __future__ import annotations

import contextlib
import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import PartitionSpec as P

IMPLEMENTATIONS = ("auto", "xla", "cudnn", "splash")
_TARGETS: list[str] = []  # platforms being compiled for ahead of time (sdft_jax.aot), innermost last


@contextlib.contextmanager
def compiling_for(platform: str):
    """Kernels chosen for `platform` ("tpu", "gpu") instead of this machine's: sdft_jax.aot traces on a
    CPU for a TPU or GPU, where splash must be the Mosaic kernel, not its interpret mode."""
    _TARGETS.append(platform)
    try:
        yield
    finally:
        _TARGETS.pop()


def target_platform() -> str:
    return _TARGETS[-1] if _TARGETS else jax.devices()[0].platform


def resolve(name: str, compute_dtype: str, platform: str | None = None) -> str:
    """`auto` -> the platform's kernel; anything else is checked and returned. cuDNN's flash
    attention takes bf16 / fp16 only, so `auto` keeps xla for a float32 forward on a GPU."""
    if name not in IMPLEMENTATIONS:
        raise ValueError(f"model.attention={name!r}; expected one of {', '.join(IMPLEMENTATIONS)}")
    half = compute_dtype in ("bfloat16", "float16")
    if name == "cudnn" and not half:
        raise ValueError(f"model.attention=cudnn needs a bfloat16 compute dtype (model.compute_dtype), "
                         f"got {compute_dtype}")
    if name != "auto":
        return name
    platform = platform or target_platform()
    if platform in ("gpu", "cuda"):
        return "cudnn" if half else "xla"
    return "splash" if platform == "tpu" else "xla"


def key_valid(mask_BxTxS):
    """Which keys hold real tokens, from the causal-and-valid mask: the last query (always a real
    token under left padding) sees every real key."""
    return mask_BxTxS[:, -1, :]


def cudnn_attention(q_BxTxNxH, k_BxSxKxH, v_BxSxKxH, mask_BxTxS, implementation="cudnn"):
    """jax.nn.dot_product_attention with the left-padding mask (pad queries see themselves).
    `implementation=None` runs XLA's reference of the same call (tests on CPU)."""
    T = q_BxTxNxH.shape[1]
    mask = mask_BxTxS | jnp.eye(T, dtype=jnp.bool_)[None]
    return jax.nn.dot_product_attention(q_BxTxNxH, k_BxSxKxH, v_BxSxKxH, mask=mask[:, None],
                                        implementation=implementation)


LANES = 128  # splash blocks are multiples of the TPU's 128 lanes, in interpret mode too


def _block(n: int) -> int:
    """512, 256 or 128, the largest dividing n (a multiple of LANES)."""
    return next(b for b in (512, 256, 128) if n % b == 0)


@functools.lru_cache(maxsize=None)
def _splash_kernel(groups: int, T: int, interpret: bool):
    # Pallas' TPU ops, imported only when splash is chosen (they pull in Mosaic; CPU/GPU runs never need them).
    from jax.experimental.pallas.ops.tpu.splash_attention import splash_attention_kernel as sk
    from jax.experimental.pallas.ops.tpu.splash_attention import splash_attention_mask as sm
    b = _block(T)
    mask = sm.MultiHeadMask([sm.CausalMask((T, T)) for _ in range(groups)])
    sizes = sk.BlockSizes(block_q=b, block_kv=b, block_kv_compute=b, block_q_dkv=b, block_kv_dkv=b,
                          block_kv_dkv_compute=b, block_q_dq=b, block_kv_dq=b)
    # Cached across traces: its mask arrays must be constants, not a tracer of the trace that built it.
    with jax.ensure_compile_time_eval():
        return sk.make_splash_mqa_single_device(mask=mask, block_sizes=sizes, interpret=interpret)


def splash_attention(q_BxTxNxH, k_BxSxKxH, v_BxSxKxH, mask_BxTxS, interpret: bool | None = None):
    """Grouped-query attention as one splash MQA kernel per (row, key/value head): the G = N / K
    query heads of a group share its key and value. Left padding via segment ids (pad = 0, real = 1:
    a pad query sees only pad keys, itself among them). The length is padded on the right to a
    multiple of 128 with pad-segment positions, dropped from the output.

    A Mosaic kernel cannot be partitioned by XLA: under a mesh (step.py traces the step inside
    `jax.sharding.use_abstract_mesh`) the kernel runs per device in a shard_map, rows over the batch
    axes and heads over `tensor`, as the activations are sharded anyway."""
    if interpret is None:
        interpret = target_platform() != "tpu"
    segments_BxS = key_valid(mask_BxTxS).astype(jnp.int32)
    local = functools.partial(_splash_local, interpret=interpret)
    mesh = jax.sharding.get_abstract_mesh()
    if mesh.empty or mesh.size == 1:
        return local(q_BxTxNxH, k_BxSxKxH, v_BxSxKxH, segments_BxS)
    rows = tuple(a for a in ("data", "fsdp") if a in mesh.axis_names)
    heads = "tensor" if "tensor" in mesh.axis_names else None
    qkv = P(rows, None, heads, None)
    return jax.shard_map(local, mesh=mesh, in_specs=(qkv, qkv, qkv, P(rows, None)), out_specs=qkv,
                         check_vma=False)(q_BxTxNxH, k_BxSxKxH, v_BxSxKxH, segments_BxS)


def _splash_local(q_BxTxNxH, k_BxSxKxH, v_BxSxKxH, segments_BxS, interpret: bool):
    # Pallas' TPU ops, imported only when splash runs.
    from jax.experimental.pallas.ops.tpu.splash_attention import splash_attention_kernel as sk
    B, T0, N, H = q_BxTxNxH.shape
    K = k_BxSxKxH.shape[2]
    T = -(-T0 // LANES) * LANES
    if T != T0:
        pad = [(0, 0), (0, T - T0), (0, 0), (0, 0)]
        q_BxTxNxH, k_BxSxKxH, v_BxSxKxH = (jnp.pad(x, pad) for x in (q_BxTxNxH, k_BxSxKxH, v_BxSxKxH))
        segments_BxS = jnp.pad(segments_BxS, [(0, 0), (0, T - T0)])
    kernel = _splash_kernel(N // K, T, interpret)
    q_BxKxGxTxH = (q_BxTxNxH * np.float32(H ** -0.5).astype(q_BxTxNxH.dtype)).reshape(B, T, K, N // K, H)
    q_BxKxGxTxH = q_BxKxGxTxH.transpose(0, 2, 3, 1, 4)
    k_BxKxSxH, v_BxKxSxH = (x.transpose(0, 2, 1, 3) for x in (k_BxSxKxH, v_BxSxKxH))

    def one(q_GxTxH, k_SxH, v_SxH, seg_S):
        return kernel(q_GxTxH, k_SxH, v_SxH, segment_ids=sk.SegmentIds(q=seg_S, kv=seg_S))

    per_head = jax.vmap(one, in_axes=(0, 0, 0, None))  # over key/value heads
    out_BxKxGxTxH = jax.vmap(per_head)(q_BxKxGxTxH, k_BxKxSxH, v_BxKxSxH, segments_BxS)
    out_BxTxNxH = out_BxKxGxTxH.transpose(0, 3, 1, 2, 4).reshape(B, T, N, H)
    return out_BxTxNxH[:, :T0].astype(q_BxTxNxH.dtype)
