"""Tiny random Hugging Face models and a Qwen-style tokenizer, built offline inside the tests."""
from __future__ import annotations

import os
import zlib

import numpy as np

from sdft_jax.model.byte_tokenizer import BYTE_VOCAB as VOCAB  # 256 bytes + 3 specials

SMALL = dict(vocab_size=VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
             num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512)
LLAMA3_ROPE = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
               "original_max_position_embeddings": 64}


def hf_model(kind: str, seed: int = 0, **overrides):
    import torch
    import transformers as tf
    classes = {"qwen2": (tf.Qwen2Config, tf.Qwen2ForCausalLM),
               "qwen3": (tf.Qwen3Config, tf.Qwen3ForCausalLM),
               "llama": (tf.LlamaConfig, tf.LlamaForCausalLM)}
    defaults = {"qwen2": dict(tie_word_embeddings=False),
                "qwen3": dict(head_dim=24, tie_word_embeddings=False),
                "llama": dict(tie_word_embeddings=True, rope_scaling=LLAMA3_ROPE)}
    cfg_cls, model_cls = classes[kind]
    kwargs = {**SMALL, **defaults[kind], **overrides}
    torch.manual_seed(seed)
    model = model_cls(cfg_cls(**kwargs)).eval()
    # Default init (std 0.02) gives near-uniform logits; widen weights so parity tests see real signal.
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.ndim == 2:
                p.normal_(0.0, 0.15, generator=torch.Generator().manual_seed(zlib.crc32(name.encode()) + seed))
            elif "norm" in name:
                p.uniform_(0.8, 1.2)
            else:
                p.normal_(0.0, 0.1)
    return model


def build(kind: str, path, seed: int = 0, dtype=None, **overrides) -> str:
    model = hf_model(kind, seed, **overrides)
    if dtype is not None:
        model = model.to(dtype)
    model.save_pretrained(str(path))
    tokenizer(str(path))
    return str(path)


def tokenizer(save_dir: str | None = None):
    """A byte-level BPE tokenizer with Qwen's special tokens and chat template (ids < VOCAB)."""
    from sdft_jax.model.byte_tokenizer import byte_tokenizer
    return byte_tokenizer(save_dir)


def left_padded_batch(seed: int = 0, batch: int = 3, length: int = 12, vocab: int = VOCAB):
    rng = np.random.RandomState(seed)
    tokens = rng.randint(0, vocab, (batch, length))
    mask = np.ones((batch, length), np.int64)
    for row in range(1, batch):
        mask[row, : min(length - 1, 3 * row + 1)] = 0
    tokens = np.where(mask == 1, tokens, 0)
    return tokens, mask


def hf_logits(model, tokens, mask) -> np.ndarray:
    import torch
    positions = np.maximum(mask.cumsum(-1) - 1, 0)
    with torch.no_grad():
        out = model(torch.tensor(tokens), attention_mask=torch.tensor(mask),
                    position_ids=torch.tensor(positions))
    return out.logits.float().numpy()


def reload_hf(path: str):
    import torch
    from transformers import AutoModelForCausalLM
    return AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()


def exists(path: str) -> bool:
    return os.path.isfile(os.path.join(path, "config.json"))
