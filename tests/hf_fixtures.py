"""Tiny random Hugging Face models and a Qwen-style tokenizer, built offline inside the tests."""
from __future__ import annotations

import os

import numpy as np

VOCAB = 272  # 256 byte tokens + 3 specials, padded to a multiple of 8
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
                p.normal_(0.0, 0.15, generator=torch.Generator().manual_seed(hash(name) % 2**31))
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
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast
    vocab = {ch: i for i, ch in enumerate(_byte_alphabet())}
    vocab.update({s: 256 + i for i, s in enumerate(["<|endoftext|>", "<|im_start|>", "<|im_end|>"])})
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    hf = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                 additional_special_tokens=["<|im_start|>"])
    hf.chat_template = (
        "{% for m in messages %}{% if loop.first and m['role'] != 'system' %}"
        "{{ '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n' }}{% endif %}"
        "{{ '<|im_start|>' + m['role'] + '\n' + m['content'] + '<|im_end|>' + '\n' }}{% endfor %}"
        "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")
    if save_dir:
        hf.save_pretrained(save_dir)
    return hf


def _byte_alphabet() -> list[str]:
    """GPT-2's byte -> printable unicode map, in byte order (so token id == byte value)."""
    printable = list(range(33, 127)) + list(range(161, 173)) + list(range(174, 256))
    chars, extra = {}, 0
    for b in range(256):
        if b in printable:
            chars[b] = chr(b)
        else:
            chars[b] = chr(256 + extra)
            extra += 1
    return [chars[b] for b in range(256)]


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
