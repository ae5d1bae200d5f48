"""A random Qwen2 checkpoint in Hugging Face format, from our own initializer (no download):
`configs/tiny.py`, the demo's base before pretraining, benchmarks and tests build theirs with it."""
from __future__ import annotations

import json
import os
import shutil

from sdft_jax.model.byte_tokenizer import BYTE_VOCAB, byte_tokenizer


def qwen2_hf_config(hidden=64, layers=2, heads=4, kv_heads=2, intermediate=128, vocab=BYTE_VOCAB,
                    tie=False) -> dict:
    return {"architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "vocab_size": vocab,
            "hidden_size": hidden, "intermediate_size": intermediate, "num_hidden_layers": layers,
            "num_attention_heads": heads, "num_key_value_heads": kv_heads, "hidden_act": "silu",
            "max_position_embeddings": 4096, "rms_norm_eps": 1e-6, "rope_theta": 10000.0,
            "tie_word_embeddings": tie, "use_sliding_window": False, "bos_token_id": 256,
            "eos_token_id": 258, "pad_token_id": 256, "torch_dtype": "float32"}


def build_random_checkpoint(path: str, seed: int = 0, tokenizer=None, **arch) -> str:
    """A random Qwen2 checkpoint (our initializer) saved as an HF folder; kept if already there.
    Safe when several processes build the same folder at once (each writes its own, one wins)."""
    if os.path.isfile(os.path.join(path, "config.json")):
        return path
    # Here, not at the top: benchmarks/memory.py reads qwen2_hf_config before it may import JAX (it sets
    # XLA_FLAGS first), and a config file's qwen2_hf_config must not start JAX either.
    from sdft_jax.model import ModelConfig, init_params
    from sdft_jax.model.hf_io import save_params
    hf_config = qwen2_hf_config(**arch)
    cfg = ModelConfig.from_hf_dict(hf_config, param_dtype="float32", dtype="float32")
    tmp = f"{path}.partial-{os.getpid()}"
    save_params(tmp, init_params(cfg, seed), cfg, hf_config, tokenizer=tokenizer or byte_tokenizer())
    with open(os.path.join(tmp, "generation_config.json"), "w") as f:
        json.dump({"eos_token_id": [258, 256], "pad_token_id": 256}, f)
    try:
        os.replace(tmp, path)
    except OSError:  # another process finished first: keep its folder
        shutil.rmtree(tmp, ignore_errors=True)
    return path
