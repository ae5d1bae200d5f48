"""LoRA adapters over a frozen base: split / combine the params dict, merge for export, PEFT export.

The adapters are ordinary rows of the parameter table (`params.py`: `q_lora_a` [L, in, r],
`q_lora_b` [L, r, out], float32), so the model, sharding and random init treat them like any
parameter; `transformer._proj` adds `(alpha / r) * x A B`. Training keeps them apart from the
base: `TrainState.params` holds the adapters (all the optimizer, EMA and checkpoints see) and
`TrainState.frozen_params` the base, which is loaded once and never updated.

Written here rather than with qwix: qwix adds adapters by intercepting the ops of NNX modules by
module path, while our layers are one function scanned over a stacked pure dict, so q, k, v, o
share one call site and qwix's adapters would be per call, not per stacked layer.
"""
from __future__ import annotations

import json
import os

import jax
import jax.numpy as jnp
import numpy as np

from sdft_jax.model import params as specs
from sdft_jax.model import quant
from sdft_jax.model.config import ModelConfig
from sdft_jax.model.safetensors_io import write_safetensors

PEFT_PREFIX = "base_model.model."


def split_adapters(params: dict) -> tuple[dict, dict]:
    """-> (adapters, base), both params-shaped dicts (adapters only under `layers`)."""
    layers = params["layers"]
    adapters = {"layers": {k: v for k, v in layers.items() if specs.LAYER[k].adapter}}
    base = {**params, "layers": {k: v for k, v in layers.items() if not specs.LAYER[k].adapter}}
    return adapters, base


def has_adapters(params: dict) -> bool:
    return any(specs.LAYER[k].adapter for k in params.get("layers", {}))


def combine(base: dict | None, adapters: dict) -> dict:
    """The model's full params: base + adapters (base None = `adapters` is already the full model)."""
    if base is None:
        return adapters
    return {**base, "layers": {**base["layers"], **adapters["layers"]}}


def merged(params: dict, cfg: ModelConfig) -> dict:
    """Base + adapters folded in (W + scale * A B, in fp32, cast back to W's dtype), adapters dropped:
    the plain model a Hugging Face checkpoint holds."""
    adapters, base = split_adapters(params)
    layers = dict(base["layers"])
    if cfg.base_quant:  # QLoRA: the dequantized base, in the dtype of the unquantized leaves
        for t in specs.QUANTIZABLE:
            layers[t] = quant.dequantize(layers.pop(f"{t}_qcodes"), layers.pop(f"{t}_qscale"), cfg.base_quant,
                                         jnp.dtype(cfg.param_dtype))
    for t in cfg.lora_targets:
        a, b = adapters["layers"][f"{t}_lora_a"], adapters["layers"][f"{t}_lora_b"]
        w = layers[t]
        delta = jnp.einsum("lir,lro->lio", a.astype(jnp.float32), b.astype(jnp.float32))
        layers[t] = (w.astype(jnp.float32) + cfg.lora_scale * delta).astype(w.dtype)
    return {**base, "layers": layers}


def peft_config(cfg: ModelConfig, base_model_path: str | None) -> dict:
    modules = [specs.LAYER[t].hf.rsplit(".", 1)[0].split(".")[-1] for t in cfg.lora_targets]
    return {"peft_type": "LORA", "task_type": "CAUSAL_LM", "r": cfg.lora_rank, "lora_alpha": cfg.lora_alpha,
            "target_modules": sorted(modules), "lora_dropout": 0.0, "bias": "none", "fan_in_fan_out": False,
            "use_rslora": False, "use_dora": False, "init_lora_weights": True, "modules_to_save": None,
            "base_model_name_or_path": base_model_path}


def save_peft_adapter(out_dir: str, params: dict, cfg: ModelConfig, base_model_path: str | None = None) -> None:
    """`adapter_config.json` + `adapter_model.safetensors` that `peft.PeftModel.from_pretrained` loads
    onto the Hugging Face base model (fp32 tensors, PEFT names and [r, in] / [out, r] layout)."""
    adapters, _ = split_adapters(params)
    host = {k: np.asarray(jax.device_get(v), np.float32) for k, v in adapters["layers"].items()}
    tensors = {}
    for key, arr in host.items():
        for i, (name, transposed) in enumerate(specs.hf_names(("layers", key), cfg.num_layers)):
            tensors[PEFT_PREFIX + name] = arr[i].T if transposed else arr[i]
    if jax.process_index() != 0:
        return
    os.makedirs(out_dir, exist_ok=True)
    names = sorted(tensors)
    write_safetensors(os.path.join(out_dir, "adapter_model.safetensors"),
                      [(n, tensors[n].shape, np.dtype(np.float32)) for n in names],
                      lambda n: np.ascontiguousarray(tensors[n]), metadata={"format": "pt"})
    with open(os.path.join(out_dir, "adapter_config.json"), "w") as f:
        json.dump(peft_config(cfg, base_model_path), f, indent=2)
