"""config.json fields (architecture only) of the public checkpoints the shipped configs name, so
their shapes are known without the folder: sdft_jax.aot compiles a 7B for a TPU pod from a laptop,
benchmarks/memory.py estimates memory. Keyed by the folder name (the last part of model.path)."""
from __future__ import annotations

import os

HF_CONFIGS = {
    "Qwen2.5-7B-Instruct": dict(architectures=["Qwen2ForCausalLM"], vocab_size=152064, hidden_size=3584,
                                intermediate_size=18944, num_hidden_layers=28, num_attention_heads=28,
                                num_key_value_heads=4, rope_theta=1e6, tie_word_embeddings=False),
    "Qwen3-8B": dict(architectures=["Qwen3ForCausalLM"], vocab_size=151936, hidden_size=4096,
                     intermediate_size=12288, num_hidden_layers=36, num_attention_heads=32,
                     num_key_value_heads=8, head_dim=128, rope_theta=1e6, tie_word_embeddings=False),
    "Qwen2.5-1.5B-Instruct": dict(architectures=["Qwen2ForCausalLM"], vocab_size=151936, hidden_size=1536,
                                  intermediate_size=8960, num_hidden_layers=28, num_attention_heads=12,
                                  num_key_value_heads=2, rope_theta=1e6, tie_word_embeddings=True),
    "Qwen2.5-0.5B-Instruct": dict(architectures=["Qwen2ForCausalLM"], vocab_size=151936, hidden_size=896,
                                  intermediate_size=4864, num_hidden_layers=24, num_attention_heads=14,
                                  num_key_value_heads=2, rope_theta=1e6, tie_word_embeddings=True),
}


def known_config(model_path: str) -> dict | None:
    """The table's config.json for a model path whose last part names a known checkpoint
    (case-insensitive, a hub id's ORG/ and @REVISION ignored); None otherwise."""
    name = os.path.basename(model_path.rstrip("/").split("@")[0]).lower()
    return next((dict(v) for k, v in HF_CONFIGS.items() if k.lower() == name), None)
