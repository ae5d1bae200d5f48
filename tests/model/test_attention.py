"""model.attention: splash (Pallas, interpret mode on CPU) and the cuDNN call's masking equal the
xla path at every real position, forward and backward; cuDNN itself only where a GPU is."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sdft_jax.model import attention, load_pretrained, transformer
from sdft_jax.model.config import ModelConfig
from tests import hf_fixtures as hf

ON_GPU = jax.devices()[0].platform in ("gpu", "cuda")


def test_auto_picks_by_platform_and_bad_names_are_named():
    assert attention.resolve("auto", "bfloat16", "cpu") == "xla"
    assert attention.resolve("auto", "bfloat16", "gpu") == "cudnn"
    assert attention.resolve("auto", "float32", "gpu") == "xla"  # cuDNN flash attention is bf16 / fp16 only
    assert attention.resolve("auto", "float32", "tpu") == "splash"
    with pytest.raises(ValueError, match="model.attention='flash'"):
        attention.resolve("flash", "bfloat16")
    with pytest.raises(ValueError, match="model.attention=cudnn needs a bfloat16"):
        attention.resolve("cudnn", "float32")


def _qkv(T=96, B=3, N=4, K=2, H=16):
    r = np.random.RandomState(0)
    q, k, v = (jnp.asarray(r.randn(B, T, n, H), jnp.float32) for n in (N, K, K))
    valid = np.ones((B, T), bool)
    valid[1, :20], valid[2, :T - 5] = False, False  # left padding; row 2 has 5 real tokens
    mask = jnp.asarray(np.tril(np.ones((T, T), bool))[None] & valid[:, None, :])
    cfg = ModelConfig(arch="qwen2", vocab_size=8, hidden_size=N * H, num_layers=1, num_heads=N, num_kv_heads=K,
                      head_dim=H, intermediate_size=8)
    return q, k, v, mask, valid, cfg


@pytest.mark.parametrize("kernel", ["splash", "cudnn_call"])
@pytest.mark.parametrize("T", [96, 256])  # 96: padded to 128 inside splash
def test_kernel_equals_xla_attention_at_real_positions(kernel, T):
    q, k, v, mask, valid, cfg = _qkv(T)
    fn = {"splash": lambda q: attention.splash_attention(q, k, v, mask),
          # the same jax.nn.dot_product_attention call cuDNN gets, run by XLA's reference here
          "cudnn_call": lambda q: attention.cudnn_attention(q, k, v, mask, implementation=None)}[kernel]
    ref = lambda q: transformer._attention(q, k, v, mask, cfg)  # noqa: E731
    got, want = np.asarray(fn(q)), np.asarray(ref(q))
    assert np.isfinite(got).all()
    assert np.abs(got - want)[valid].max() < 1e-5
    weight = jnp.asarray(valid, jnp.float32)[:, :, None, None]  # pad outputs are never used
    g_got, g_want = (jax.grad(lambda q, f=f: (f(q) * weight).sum())(q) for f in (fn, ref))
    assert float(jnp.abs(g_got - g_want).max()) < 1e-4


def test_splash_under_a_mesh_runs_per_device_and_equals_xla():
    """Under a mesh (as step.py traces) splash runs in a shard_map, rows over fsdp and heads over
    tensor (a Mosaic kernel cannot be partitioned by XLA): same values and gradients as unsharded xla."""
    from jax.sharding import NamedSharding, PartitionSpec as P

    from sdft_jax import sharding as shd
    q, k, v, mask, valid, cfg = _qkv(T=96, B=4)
    mesh = shd.make_mesh(1, 2, 2, devices=jax.devices()[:4])
    put = lambda x, spec: jax.device_put(x, NamedSharding(mesh, spec))  # noqa: E731
    q, k, v = (put(x, P(shd.BATCH_AXES, None, "tensor", None)) for x in (q, k, v))
    mask = put(mask, P(shd.BATCH_AXES, None, None))
    weight = jnp.asarray(valid, jnp.float32)[:, :, None, None]
    fn = jax.jit(shd.traced_under(mesh, lambda q: attention.splash_attention(q, k, v, mask)))
    loss = jax.jit(jax.grad(shd.traced_under(mesh, lambda q: (attention.splash_attention(q, k, v, mask) * weight).sum())))
    assert "shard_map" in str(jax.make_jaxpr(fn)(q)) or "shmap" in str(jax.make_jaxpr(fn)(q))
    want = transformer._attention(q, k, v, mask, cfg)
    g_want = jax.grad(lambda q: (transformer._attention(q, k, v, mask, cfg) * weight).sum())(q)
    assert np.abs(np.asarray(fn(q)) - np.asarray(want))[valid].max() < 1e-5
    assert float(jnp.abs(loss(q) - g_want).max()) < 1e-4


def test_splash_model_logits_equal_xla(tiny_qwen2):
    tokens, mask = hf.left_padded_batch(length=40)
    real = mask.astype(bool)
    xla = np.asarray(load_pretrained(tiny_qwen2, "float32", tokenizer=False)(tokens, mask))
    splash = np.asarray(load_pretrained(tiny_qwen2, "float32", tokenizer=False, attention="splash")(tokens, mask))
    assert np.abs(splash - xla)[real].max() < 1e-4


@pytest.mark.skipif(not ON_GPU, reason="cuDNN attention needs a GPU")
def test_cudnn_model_logits_equal_xla_on_gpu(tiny_qwen2):
    tokens, mask = hf.left_padded_batch(length=40)
    real = mask.astype(bool)
    kw = dict(dtype="float32", compute_dtype="bfloat16", tokenizer=False)
    xla = np.asarray(load_pretrained(tiny_qwen2, **kw)(tokens, mask))
    cudnn = np.asarray(load_pretrained(tiny_qwen2, attention="cudnn", **kw)(tokens, mask))
    assert np.abs(cudnn - xla)[real].max() < 0.1  # bf16 compute either way; the kernels round differently
