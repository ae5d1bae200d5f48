"""Every parameter in one place: its shape, logical sharding axes, initializer and Hugging Face name.

Adding a parameter (a bias, a norm, an adapter) is one row here: the module creates it
(`transformer.py`), `param_shardings` shards it (`handle.py`) and the safetensors reader and writer
map it (`hf_io.py`) from this table. Layer parameters are stacked on a leading `layers` axis; their
shapes below are per layer. Projections are stored [in, out] (HF stores [out, in]: `transposed`).
Row order is creation order, which fixes how the random initializer's keys are drawn.
"""
from __future__ import annotations

import dataclasses
from typing import Callable

from sdft_jax.model import quant
from sdft_jax.model.config import LORA_TARGETS, ModelConfig


@dataclasses.dataclass(frozen=True)
class ParamSpec:
    shape: Callable[[ModelConfig], tuple[int, ...]]
    axes: tuple[str | None, ...]  # logical axes (sharding.TRAIN_RULES), per layer for layer params
    hf: str  # name in the HF checkpoint (inside model.layers.{i}. for layer params)
    init: str = "normal"  # normal (std 0.02) | ones | zeros | lora_a (PEFT's kaiming-uniform, +-1/sqrt(in))
    transposed: bool = False
    present: Callable[[ModelConfig], bool] = lambda cfg: True
    adapter: bool = False  # a LoRA factor: trained, kept in float32, exported in PEFT format (hf = PEFT name)
    quantized: str = ""  # "codes" | "scale": a QLoRA base projection (quant.py), read from `hf` and quantized


def _d(c): return c.hidden_size  # noqa: E704
def _q(c): return c.num_heads * c.head_dim  # noqa: E704
def _kv(c): return c.num_kv_heads * c.head_dim  # noqa: E704


LAYER = {
    "attn_norm": ParamSpec(lambda c: (_d(c),), ("norm",), "input_layernorm.weight", "ones"),
    "q": ParamSpec(lambda c: (_d(c), _q(c)), ("embed", "q_heads"), "self_attn.q_proj.weight", transposed=True),
    "k": ParamSpec(lambda c: (_d(c), _kv(c)), ("embed", "kv_heads"), "self_attn.k_proj.weight", transposed=True),
    "v": ParamSpec(lambda c: (_d(c), _kv(c)), ("embed", "kv_heads"), "self_attn.v_proj.weight", transposed=True),
    "o": ParamSpec(lambda c: (_q(c), _d(c)), ("q_heads", "embed"), "self_attn.o_proj.weight", transposed=True),
    "q_bias": ParamSpec(lambda c: (_q(c),), ("q_heads",), "self_attn.q_proj.bias", "zeros", present=lambda c: c.qkv_bias),
    "k_bias": ParamSpec(lambda c: (_kv(c),), ("kv_heads",), "self_attn.k_proj.bias", "zeros", present=lambda c: c.qkv_bias),
    "v_bias": ParamSpec(lambda c: (_kv(c),), ("kv_heads",), "self_attn.v_proj.bias", "zeros", present=lambda c: c.qkv_bias),
    "o_bias": ParamSpec(lambda c: (_d(c),), ("norm",), "self_attn.o_proj.bias", "zeros", present=lambda c: c.o_bias),
    "q_norm": ParamSpec(lambda c: (c.head_dim,), ("norm",), "self_attn.q_norm.weight", "ones", present=lambda c: c.qk_norm),
    "k_norm": ParamSpec(lambda c: (c.head_dim,), ("norm",), "self_attn.k_norm.weight", "ones", present=lambda c: c.qk_norm),
    "mlp_norm": ParamSpec(lambda c: (_d(c),), ("norm",), "post_attention_layernorm.weight", "ones"),
    "gate": ParamSpec(lambda c: (_d(c), c.intermediate_size), ("embed", "mlp"), "mlp.gate_proj.weight", transposed=True),
    "up": ParamSpec(lambda c: (_d(c), c.intermediate_size), ("embed", "mlp"), "mlp.up_proj.weight", transposed=True),
    "down": ParamSpec(lambda c: (c.intermediate_size, _d(c)), ("mlp", "embed"), "mlp.down_proj.weight", transposed=True),
}


def _lora_rows(target: str, base: ParamSpec, module: str) -> dict[str, ParamSpec]:
    """A [in, r] and B [r, out] for the projection `base` (PEFT stores A [r, in], B [out, r])."""
    on = lambda c: c.lora_rank > 0 and target in c.lora_targets  # noqa: E731
    return {f"{target}_lora_a": ParamSpec(lambda c: (base.shape(c)[0], c.lora_rank), (base.axes[0], None),
                                          f"{module}.lora_A.weight", "lora_a", True, on, adapter=True),
            f"{target}_lora_b": ParamSpec(lambda c: (c.lora_rank, base.shape(c)[1]), (None, base.axes[1]),
                                          f"{module}.lora_B.weight", "zeros", True, on, adapter=True)}


def _quantized_rows(target: str, base: ParamSpec) -> dict[str, ParamSpec]:
    """A QLoRA base projection: codes + scales (quant.py) instead of the weight itself."""
    on = lambda c: bool(c.base_quant)  # noqa: E731
    return {f"{target}_qcodes": ParamSpec(lambda c: quant.code_shapes(c.base_quant, base.shape(c))[0], base.axes,
                                          base.hf, "zeros", True, on, quantized="codes"),
            f"{target}_qscale": ParamSpec(lambda c: quant.code_shapes(c.base_quant, base.shape(c))[1],
                                          (None, base.axes[1]), base.hf, "ones", True, on, quantized="scale")}


# After every base row, so adding adapters or quantizing does not change how the base's random
# keys are drawn. A quantized projection's own row is absent (`present`), its codes and scales present.
for _t in LORA_TARGETS:
    _base = LAYER[_t]
    LAYER[_t] = dataclasses.replace(_base, present=lambda c: not c.base_quant)
    LAYER.update(_lora_rows(_t, _base, _base.hf.rsplit(".", 1)[0]))
    LAYER.update(_quantized_rows(_t, _base))

QUANTIZABLE = LORA_TARGETS  # the projections a QLoRA base stores quantized

# `layers` is created between embed and final_norm (transformer.Transformer).
TOP = {
    "embed": ParamSpec(lambda c: (c.vocab_size, _d(c)), ("vocab", "embed"), "model.embed_tokens.weight"),
    "final_norm": ParamSpec(lambda c: (_d(c),), ("norm",), "model.norm.weight", "ones"),
    "lm_head": ParamSpec(lambda c: (_d(c), c.vocab_size), ("embed", "vocab"), "lm_head.weight", transposed=True,
                         present=lambda c: not c.tie_word_embeddings),
}


def spec_of(path: tuple[str, ...]) -> ParamSpec:
    return LAYER[path[1]] if path[0] == "layers" else TOP[path[0]]


def logical_axes(path: tuple[str, ...]) -> tuple[str | None, ...]:
    spec = spec_of(path)
    return ("layers", *spec.axes) if path[0] == "layers" else spec.axes


def is_adapter(path: tuple[str, ...]) -> bool:
    return path[0] == "layers" and LAYER[path[1]].adapter


def hf_names(path: tuple[str, ...], num_layers: int) -> list[tuple[str, bool]]:
    """(HF tensor name, transposed) for each slice of one of our leaves (one per layer if stacked)."""
    spec = spec_of(path)
    if path[0] == "layers":
        return [(f"model.layers.{i}.{spec.hf}", spec.transposed) for i in range(num_layers)]
    return [(spec.hf, spec.transposed)]
