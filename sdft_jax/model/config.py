"""Model configuration read from a Hugging Face `config.json`.

One decoder family covers Qwen2 / Qwen2.5 (q/k/v bias), Qwen3 (q/k RMSNorm, explicit head_dim)
and Llama (SmolLM2, Llama-3). The dataclass is frozen and hashable so it can be a static
argument of jitted functions.
"""
from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

SUPPORTED_ARCHS = {
    "Qwen2ForCausalLM": "qwen2",
    "Qwen3ForCausalLM": "qwen3",
    "LlamaForCausalLM": "llama",
}
SUPPORTED_ROPE_TYPES = ("default", "linear", "llama3", "yarn")
REMAT_POLICIES = ("none", "full", "dots", "dots_no_batch")
LORA_TARGETS = ("q", "k", "v", "o", "gate", "up", "down")  # the projections an adapter may wrap


class ModelConfigError(ValueError):
    """A checkpoint config we cannot (or refuse to) represent."""


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    arch: str
    vocab_size: int
    hidden_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    intermediate_size: int
    rms_norm_eps: float = 1e-6
    rope_theta: float = 10000.0
    # Rope scaling as a sorted tuple of (key, value) pairs so the config stays hashable.
    rope_scaling: tuple[tuple[str, Any], ...] | None = None
    max_position_embeddings: int = 32768
    tie_word_embeddings: bool = False
    qkv_bias: bool = False  # Qwen2: q/k/v projections carry a bias
    o_bias: bool = False  # Llama attention_bias=True also biases o_proj
    qk_norm: bool = False  # Qwen3
    # Runtime options (not part of the checkpoint).
    param_dtype: str = "float32"
    dtype: str = "bfloat16"  # compute dtype; logits are always returned in fp32
    remat: str = "none"
    scan_layers: bool = True
    attention: str = "xla"  # xla | cudnn | splash: the cache-less forwards' kernel (model/attention.py)
    query_block: int = 256  # xla's cache-less causal attention runs in query blocks of this many slots
    # LoRA (model/lora.py): rank 0 = off; W x + (alpha / rank) * B A x on each target projection.
    lora_rank: int = 0
    lora_alpha: float = 16.0
    lora_targets: tuple[str, ...] = ()
    base_quant: str = ""  # "" | int8 | nf4: the frozen base's projections quantized (QLoRA, model/quant.py)

    def __post_init__(self):
        if self.num_heads % self.num_kv_heads:
            raise ModelConfigError(
                f"num_attention_heads={self.num_heads} is not a multiple of "
                f"num_key_value_heads={self.num_kv_heads}")
        if self.head_dim % 2:
            raise ModelConfigError(f"head_dim={self.head_dim} must be even for rotary embeddings")
        if self.remat not in REMAT_POLICIES:
            raise ModelConfigError(f"remat={self.remat!r}; expected one of {REMAT_POLICIES}")
        if self.attention not in ("xla", "cudnn", "splash"):
            raise ModelConfigError(f"model.attention={self.attention!r}; expected xla, cudnn or splash")
        bad = [t for t in self.lora_targets if t not in LORA_TARGETS]
        if bad or (self.lora_rank > 0 and not self.lora_targets) or self.lora_rank < 0:
            raise ModelConfigError(f"model.lora.targets={','.join(self.lora_targets)!r} (rank {self.lora_rank}): "
                                   f"expected a non-empty subset of {','.join(LORA_TARGETS)}")
        if self.base_quant and (self.base_quant not in ("int8", "nf4") or not self.lora_rank):
            raise ModelConfigError(f"base_quant={self.base_quant!r}: int8 or nf4, and only with LoRA (rank > 0)")
        if self.rope_scaling is not None:
            rope_type = dict(self.rope_scaling).get("rope_type", "default")
            if rope_type not in SUPPORTED_ROPE_TYPES:
                raise ModelConfigError(
                    f"rope scaling type {rope_type!r} is not supported; supported: {SUPPORTED_ROPE_TYPES}")

    @property
    def lora_scale(self) -> float:
        return self.lora_alpha / self.lora_rank if self.lora_rank else 0.0

    @property
    def rope_scaling_dict(self) -> dict[str, Any]:
        return dict(self.rope_scaling or ())

    def replace(self, **kwargs) -> "ModelConfig":
        return dataclasses.replace(self, **kwargs)

    @classmethod
    def from_hf_dict(cls, hf: dict[str, Any], source: str = "config.json", **runtime) -> "ModelConfig":
        archs = hf.get("architectures") or []
        model_type = hf.get("model_type")
        arch = next((SUPPORTED_ARCHS[a] for a in archs if a in SUPPORTED_ARCHS), None)
        if arch is None and model_type in ("qwen2", "qwen3", "llama"):
            arch = model_type
        if arch is None:
            raise ModelConfigError(
                f"{source}: architectures={archs} / model_type={model_type!r} is not supported; "
                f"supported: {sorted(SUPPORTED_ARCHS)}")
        if hf.get("use_sliding_window"):
            raise ModelConfigError(f"{source}: use_sliding_window=true is not supported")
        if hf.get("mlp_bias"):
            raise ModelConfigError(f"{source}: mlp_bias=true is not supported")
        if hf.get("hidden_act", "silu") != "silu":
            raise ModelConfigError(f"{source}: hidden_act={hf['hidden_act']!r}; only 'silu' is supported")
        theta, scaling = _rope_from_hf(hf, source)
        heads = hf["num_attention_heads"]
        attention_bias = bool(hf.get("attention_bias", False))
        return cls(
            arch=arch,
            vocab_size=hf["vocab_size"],
            hidden_size=hf["hidden_size"],
            num_layers=hf["num_hidden_layers"],
            num_heads=heads,
            num_kv_heads=hf.get("num_key_value_heads") or heads,
            head_dim=hf.get("head_dim") or hf["hidden_size"] // heads,
            intermediate_size=hf["intermediate_size"],
            rms_norm_eps=hf.get("rms_norm_eps", 1e-6),
            rope_theta=theta,
            rope_scaling=scaling,
            max_position_embeddings=hf.get("max_position_embeddings", 32768),
            tie_word_embeddings=bool(hf.get("tie_word_embeddings", False)),
            qkv_bias=arch == "qwen2" or attention_bias,
            o_bias=arch == "llama" and attention_bias,
            qk_norm=arch == "qwen3",
            **runtime,
        )

    @classmethod
    def from_pretrained(cls, path: str, **runtime) -> "ModelConfig":
        return cls.from_hf_dict(read_hf_config(path), source=os.path.join(path, "config.json"), **runtime)


def read_hf_config(path: str) -> dict[str, Any]:
    config_path = os.path.join(path, "config.json")
    if not os.path.isfile(config_path):
        raise FileNotFoundError(f"{config_path}: no config.json; is {path!r} a Hugging Face model folder?")
    with open(config_path) as f:
        try:
            hf = json.load(f)
        except json.JSONDecodeError as e:
            raise ModelConfigError(f"{config_path}:{e.lineno}: not valid JSON ({e.msg})") from None
    if not isinstance(hf, dict):
        raise ModelConfigError(f"{config_path}: expected a JSON object, got {type(hf).__name__}")
    return hf


def _rope_from_hf(hf: dict[str, Any], source: str) -> tuple[float, tuple | None]:
    """Both the transformers<5 form (rope_theta + rope_scaling) and the v5 form (rope_parameters)."""
    params = dict(hf.get("rope_parameters") or {})
    legacy = hf.get("rope_scaling")
    if legacy:
        params.update(legacy)
    theta = float(params.pop("rope_theta", hf.get("rope_theta", 10000.0)))
    rope_type = params.pop("rope_type", params.pop("type", "default"))
    if rope_type not in SUPPORTED_ROPE_TYPES:
        raise ModelConfigError(
            f"{source}: rope scaling type {rope_type!r} is not supported; supported: {SUPPORTED_ROPE_TYPES}")
    if rope_type == "default":
        return theta, None
    params["rope_type"] = rope_type
    return theta, tuple(sorted((k, v) for k, v in params.items() if not isinstance(v, (list, dict))))
