"""A tiny world built in code (no downloads): a byte-level tokenizer with Qwen's chat template,
a small random Qwen2 checkpoint in HF format, and a toy demonstrations file. Used by
`configs/tiny.py` and by the tests."""
from __future__ import annotations

import json
import os

import numpy as np

SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
QWEN_CHAT_TEMPLATE = (
    "{% for m in messages %}{% if loop.first and m['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n' }}{% endif %}"
    "{{ '<|im_start|>' + m['role'] + '\n' + m['content'] + '<|im_end|>' + '\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")
TINY_VOCAB = 272  # 256 bytes + 3 specials, padded to a multiple of 16


def _byte_alphabet() -> list[str]:
    """GPT-2's byte -> printable unicode map, in byte order (so token id == byte value)."""
    printable = set(range(33, 127)) | set(range(161, 173)) | set(range(174, 256))
    chars, extra = [], 0
    for b in range(256):
        if b in printable:
            chars.append(chr(b))
        else:
            chars.append(chr(256 + extra))
            extra += 1
    return chars


def byte_tokenizer(save_dir: str | None = None, chat_template: str = QWEN_CHAT_TEMPLATE):
    """Byte-level BPE without merges: token id = byte value; Qwen special tokens at 256-258."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast
    vocab = {ch: i for i, ch in enumerate(_byte_alphabet())}
    vocab.update({s: 256 + i for i, s in enumerate(SPECIALS)})
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    hf = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                 additional_special_tokens=["<|im_start|>"])
    hf.chat_template = chat_template
    if save_dir:
        hf.save_pretrained(save_dir)
    return hf


def qwen2_hf_config(hidden=64, layers=2, heads=4, kv_heads=2, intermediate=128, vocab=TINY_VOCAB,
                    tie=False) -> dict:
    return {"architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "vocab_size": vocab,
            "hidden_size": hidden, "intermediate_size": intermediate, "num_hidden_layers": layers,
            "num_attention_heads": heads, "num_key_value_heads": kv_heads, "hidden_act": "silu",
            "max_position_embeddings": 4096, "rms_norm_eps": 1e-6, "rope_theta": 10000.0,
            "tie_word_embeddings": tie, "use_sliding_window": False, "bos_token_id": 256,
            "eos_token_id": 258, "pad_token_id": 256, "torch_dtype": "float32"}


def build_tiny_model(path: str, seed: int = 0, tokenizer=None, **arch) -> str:
    """A random Qwen2 checkpoint (our initializer) saved as an HF folder; kept if already there."""
    if os.path.isfile(os.path.join(path, "config.json")):
        return path
    from sdft_jax.model import ModelConfig, init_params
    from sdft_jax.model.hf_io import save_params
    hf_config = qwen2_hf_config(**arch)
    cfg = ModelConfig.from_hf_dict(hf_config, param_dtype="float32", dtype="float32")
    tmp = path + ".partial"
    save_params(tmp, init_params(cfg, seed), cfg, hf_config, tokenizer=tokenizer or byte_tokenizer())
    with open(os.path.join(tmp, "generation_config.json"), "w") as f:
        json.dump({"eos_token_id": [258, 256], "pad_token_id": 256}, f)
    os.replace(tmp, path)
    return path


def toy_demonstrations(path: str, n: int = 64, seed: int = 0) -> str:
    """Short string-manipulation tasks with worked answers (generic demonstrations format)."""
    if os.path.isfile(path):
        return path
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    rng = np.random.default_rng(seed)
    letters = "abcdefghij"
    with open(path + ".partial", "w") as f:
        for i in range(n):
            word = "".join(rng.choice(list(letters), size=int(rng.integers(3, 7))))
            kind = i % 3
            if kind == 0:
                prompt, answer = f"Reverse the word {word}.", word[::-1]
            elif kind == 1:
                prompt, answer = f"Uppercase the word {word}.", word.upper()
            else:
                prompt, answer = f"Repeat the word {word} twice.", f"{word} {word}"
            f.write(json.dumps({"prompt": prompt, "demonstration": f"The answer is {answer}.",
                                "answer": answer}) + "\n")
    os.replace(path + ".partial", path)
    return path
