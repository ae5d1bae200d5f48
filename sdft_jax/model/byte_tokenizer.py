"""A byte-level tokenizer built in code (no download): token id = byte value, Qwen's special
tokens at 256-258, Qwen's chat template. The demo's model and the small test models use it."""
from __future__ import annotations

SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
QWEN_CHAT_TEMPLATE = (
    "{% for m in messages %}{% if loop.first and m['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n' }}{% endif %}"
    "{{ '<|im_start|>' + m['role'] + '\n' + m['content'] + '<|im_end|>' + '\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")
BYTE_VOCAB = 272  # 256 bytes + 3 specials, padded to a multiple of 16


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
    # Here: transformers takes seconds to import, and BYTE_VOCAB is read by modules that never build one.
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
