"""QLoRA base quantization: codes and scales equal an independent NumPy implementation, the
quantized model stays close to the full-precision one, and a QLoRA step leaves the codes untouched."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sdft_jax.model import load_pretrained, lora, quant
from sdft_jax.core.train_state import OptimConfig, init_state, make_optimizer
from sdft_jax.core.update import StepConfig, jit_train_step, make_train_step
from tests import hf_fixtures as hf
from tests.test_train_step import _batch, _copy


def _numpy_int8(w):
    scale = np.abs(w).max(axis=-2, keepdims=True) / 127.0
    return np.clip(np.round(w / scale), -127, 127).astype(np.int8), scale


def _numpy_nf4(w):
    """Per block of 64 rows: absmax scale, nearest NF4 level, row pairs packed high/low nibble."""
    d_in, d_out = w.shape
    codes = np.zeros((d_in, d_out), np.uint8)
    scales = np.zeros((d_in // 64, d_out), np.float32)
    for blk in range(d_in // 64):
        rows = w[blk * 64:(blk + 1) * 64]
        scales[blk] = np.abs(rows).max(axis=0)
        normed = rows / scales[blk]
        codes[blk * 64:(blk + 1) * 64] = np.abs(normed[..., None] - quant.NF4_LEVELS).argmin(-1)
    return (codes[0::2] << 4) | codes[1::2], scales


@pytest.mark.parametrize("kind,reference", [("int8", _numpy_int8), ("nf4", _numpy_nf4)])
def test_codes_and_scales_equal_numpy(kind, reference):
    w = np.random.RandomState(0).standard_t(4, size=(256, 48)).astype(np.float32)  # heavy tails
    codes, scale = quant.quantize(jnp.asarray(w), kind)
    ref_codes, ref_scale = reference(w)
    np.testing.assert_allclose(np.asarray(scale), ref_scale, rtol=1e-6)
    np.testing.assert_array_equal(np.asarray(codes), ref_codes)
    back = np.asarray(quant.dequantize(codes, scale, kind, jnp.float32))
    if kind == "int8":  # rounding error is at most half a step of each column's scale
        assert np.all(np.abs(back - w) <= ref_scale / 2 * (1 + 1e-5))
    else:  # at most half the widest gap between adjacent NF4 levels, times the block's absmax
        half_gap = np.diff(quant.NF4_LEVELS).max() / 2
        assert np.all(np.abs(back - w) <= np.repeat(ref_scale, 64, axis=0) * half_gap * (1 + 1e-5))


# Stated tolerance on the tiny Qwen2 of tests/hf_fixtures (weights std 0.15, logits up to ~5): max
# |logit difference| at real positions vs the float32 model. Measured 0.09 (bf16 weights and
# compute), 0.13 (int8), 3.2 (nf4: 16 levels); the bounds leave ~1.5x room. On a real model see
# benchmarks/quant_error.py (docs/PERFORMANCE.md).
TOLERANCE = {"int8": 0.2, "nf4": 5.0}


@pytest.mark.parametrize("kind", ["int8", "nf4"])
def test_quantized_base_logits_within_tolerance_and_merged_export_reloads(kind, tiny_qwen2, tmp_path):
    tokens, mask = hf.left_padded_batch()
    real = mask.astype(bool)
    ref = np.asarray(load_pretrained(tiny_qwen2, "float32", tokenizer=False)(tokens, mask))
    model = load_pretrained(tiny_qwen2, "float32", tokenizer=False, lora_rank=4, lora_targets=("q", "down"),
                            base_quant=kind)
    layers = model.params["layers"]
    assert "q" not in layers and layers["q_qcodes"].dtype == quant.code_dtype(kind)
    got = np.asarray(model(tokens, mask))
    assert 0 < np.abs(got - ref)[real].max() < TOLERANCE[kind]
    bf16 = np.asarray(load_pretrained(tiny_qwen2, "bfloat16", tokenizer=False)(tokens, mask))
    assert np.abs(got - bf16)[real].max() < TOLERANCE[kind] + 0.1  # + the bf16 model's own 0.09
    # The merged export is the dequantized base (+ B A = 0): transformers reproduces our logits.
    model.save_pretrained(str(tmp_path / "merged"))
    np.testing.assert_allclose(hf.hf_logits(hf.reload_hf(str(tmp_path / "merged")), tokens, mask)[real], got[real],
                               atol=1e-4)


def test_qlora_step_leaves_the_quantized_base_bitwise_unchanged(tiny_qwen2):
    model = load_pretrained(tiny_qwen2, "float32", tokenizer=False, lora_rank=4, lora_targets=("q", "v", "up"),
                            base_quant="nf4")
    sc = StepConfig(teacher_kind="ema")
    tx = make_optimizer(OptimConfig(lr=1e-2, warmup_steps=0, total_steps=10))
    adapters, base = lora.split_adapters(model.params)
    state = init_state(adapters, tx, "ema", seed=0, frozen_params=base)
    before = _copy(state.frozen_params)
    step = jit_train_step(make_train_step(model.graphdef, sc, tx))
    for _ in range(2):
        state, metrics = step(state, _batch())
    assert np.isfinite(float(metrics["loss"]))
    after = _copy(state.frozen_params)
    for path, leaf in jax.tree_util.tree_flatten_with_path(before)[0]:
        np.testing.assert_array_equal(leaf, _leaf(after, path))
    assert float(np.abs(np.asarray(state.params["layers"]["q_lora_b"])).max()) > 0


def _leaf(tree, path):
    for k in path:
        tree = tree[k.key]
    return tree
