"""Qwen2 / Qwen2.5 / Qwen3 / Llama decoder in Flax NNX with Hugging Face checkpoints in and out."""
from sdft_jax.model.config import ModelConfig, ModelConfigError
from sdft_jax.model.handle import (PretrainedModel, abstract_model, from_params, init_params,
                                   load_pretrained, load_tokenizer, make_apply, param_logical_axes,
                                   param_shardings)
from sdft_jax.model.hf_io import CheckpointMismatchError
from sdft_jax.model.transformer import Transformer, default_positions, init_cache

__all__ = [
    "ModelConfig", "ModelConfigError", "PretrainedModel", "abstract_model", "from_params", "init_params",
    "load_pretrained", "load_tokenizer", "make_apply", "param_logical_axes", "param_shardings",
    "CheckpointMismatchError", "Transformer", "default_positions", "init_cache",
]
