"""Prints a completion: `python -m sdft_jax.generate --model PATH --prompt TEXT [--chat] ...`

stdout carries the completion text alone (followed by one newline), so the last line of stdout
is the completion for single-line answers; loading messages go to stderr.
"""
from __future__ import annotations

import argparse
import os
import sys

import jax
import jax.numpy as jnp

from sdft_jax.core.sampler import SamplingConfig, make_generate
from sdft_jax.data.buckets import buckets_up_to, pad_to_bucket
from sdft_jax.model import load_pretrained
from sdft_jax.model.stop_tokens import stop_token_ids


def model_folder(path: str) -> str:
    """`--model` as given, or for a run's workdir its `export/`; a LoRA adapter folder is refused."""
    if os.path.isfile(os.path.join(path, "adapter_config.json")):
        merged = os.path.join(os.path.dirname(os.path.abspath(path)), "export")
        hint = f"; the merged model is {merged}" if os.path.isfile(os.path.join(merged, "config.json")) else ""
        raise ValueError(f"--model {path}: a LoRA adapter (PEFT format), not a model{hint}")
    has_weights = any(os.path.isfile(os.path.join(path, f)) for f in ("model.safetensors", "model.safetensors.index.json"))
    if not has_weights and os.path.isfile(os.path.join(path, "export", "config.json")):
        print(f"[sdft_jax] --model {path} is a run's workdir: using its export, {os.path.join(path, 'export')}",
              file=sys.stderr, flush=True)
        return os.path.join(path, "export")
    return path


def encode_prompt(tokenizer, text: str, chat: bool, system: str | None = None) -> list[int]:
    if not chat:
        return tokenizer(text).input_ids
    if not tokenizer.chat_template:
        raise ValueError("--chat: this checkpoint's tokenizer has no chat template")
    messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": text}]
    rendered = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return tokenizer(rendered, add_special_tokens=False).input_ids


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True, help="a Hugging Face folder, hub id ORG/NAME[@REV] or gs:// folder")
    ap.add_argument("--prompt", required=True)
    ap.add_argument("--chat", action="store_true", help="apply the checkpoint's chat template")
    ap.add_argument("--system", default=None, help="system message (with --chat)")
    ap.add_argument("--max_new_tokens", type=int, default=128)
    ap.add_argument("--temperature", type=float, default=0.0, help="0 = greedy")
    ap.add_argument("--top_p", type=float, default=1.0)
    ap.add_argument("--top_k", type=int, default=0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32")
    args = ap.parse_args(argv)
    try:
        args.model = model_folder(args.model)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2

    model = load_pretrained(args.model, dtype=args.dtype)
    tok = model.tokenizer
    ids = encode_prompt(tok, args.prompt, args.chat, args.system)
    sc = SamplingConfig(max_new_tokens=args.max_new_tokens, temperature=args.temperature, top_k=args.top_k,
                        top_p=args.top_p, stop_ids=stop_token_ids(args.model, tok),
                        pad_id=tok.pad_token_id if tok.pad_token_id is not None else 0)
    tokens, mask = pad_to_bucket([ids], buckets_up_to(max(len(ids), 64)), sc.pad_id)
    generate = make_generate(model.graphdef, model.config, sc)
    rollout = generate(model.params, jnp.asarray(tokens), jnp.asarray(mask), jax.random.key(args.seed))
    n = int(rollout.lengths[0])
    out = [int(t) for t in rollout.tokens[0, :n]]
    if out and out[-1] in sc.stop_ids:
        out = out[:-1]
    text = tok.decode(out, skip_special_tokens=True)
    print(text, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
