"""Decode throughput of sdft_jax's sampler vs transformers `generate`, same model, prompts, machine.

    python benchmarks/sampler.py [--model PATH] [--batches 1,8,32] [--new_tokens 64] [--prompt_len 32]
        [--decode_chunks 8] [--no_reference]

Without --model it builds a tiny random Qwen2 in a temp folder. Greedy decoding with no stop
token, so both generate exactly new_tokens per row. Times are the median of --repeats runs after
one warm-up (compilation excluded for JAX, first-call overhead excluded for torch).
Prints a Markdown table: tokens/s = batch * new_tokens / seconds. `--decode_chunks 1,8` times each
setting of `SamplingConfig.decode_chunks` (1 = every decode step attends over the whole P + N cache),
alternating them repeat by repeat so box noise hits both alike.
"""
import argparse
import functools
import os
import tempfile

from _timing import alternating_median_seconds, median_seconds


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=None)
    ap.add_argument("--batches", default="1,8,32")
    ap.add_argument("--new_tokens", type=int, default=64)
    ap.add_argument("--prompt_len", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--decode_chunks", default="8", help="comma-separated SamplingConfig.decode_chunks to compare")
    ap.add_argument("--no_reference", action="store_true", help="skip transformers generate")
    args = ap.parse_args()

    import jax
    import jax.numpy as jnp
    import numpy as np
    import torch
    from transformers import AutoModelForCausalLM

    from sdft_jax.model import load_pretrained
    from sdft_jax.core.sampler import SamplingConfig, make_generate

    path = args.model
    if path is None:
        from sdft_jax.model.random_checkpoint import build_random_checkpoint
        path = build_random_checkpoint(os.path.join(tempfile.mkdtemp(), "qwen2"), hidden=256, intermediate=768,
                                       layers=4, heads=8, kv_heads=2)
    model = load_pretrained(path, dtype=args.dtype)
    ref = None if args.no_reference else AutoModelForCausalLM.from_pretrained(path, dtype=getattr(torch, args.dtype)).eval()
    chunks = [int(c) for c in args.decode_chunks.split(",")]
    gens = {c: make_generate(model.graphdef, model.config,
                             SamplingConfig(max_new_tokens=args.new_tokens, temperature=0.0, decode_chunks=c))
            for c in chunks}
    vocab = model.config.vocab_size
    print(f"model={os.path.basename(path.rstrip('/'))} dtype={args.dtype} prompt_len={args.prompt_len} "
          f"new_tokens={args.new_tokens} devices={jax.devices()[0].platform} x{jax.device_count()} "
          f"torch_threads={torch.get_num_threads()}")
    ours_cols = " | ".join(f"sdft_jax tok/s (decode_chunks={c})" for c in chunks)
    print(f"| batch | {ours_cols} | transformers tok/s | ratio |")
    print("|---:|" + "---:|" * (len(chunks) + 2))
    for b in [int(x) for x in args.batches.split(",")]:
        tokens = np.random.RandomState(0).randint(0, vocab, (b, args.prompt_len))
        mask = np.ones_like(tokens)
        jt, jm = jnp.asarray(tokens), jnp.asarray(mask)

        def ours(c):
            jax.block_until_ready(gens[c](model.params, jt, jm, jax.random.key(0)))

        def theirs():
            with torch.no_grad():
                ref.generate(torch.tensor(tokens), attention_mask=torch.tensor(mask), do_sample=False,
                             max_new_tokens=args.new_tokens, min_new_tokens=args.new_tokens,
                             eos_token_id=None, pad_token_id=0)

        t_ours = alternating_median_seconds({c: functools.partial(ours, c) for c in chunks}, args.repeats)
        t_theirs = median_seconds(theirs, args.repeats) if ref is not None else None
        n = b * args.new_tokens
        cols = " | ".join(f"{n / t_ours[c]:,.0f}" for c in chunks)
        theirs_col = f"{n / t_theirs:,.0f} | {t_theirs / t_ours[chunks[-1]]:.2f}x" if t_theirs else "- | -"
        print(f"| {b} | {cols} | {theirs_col} |", flush=True)


if __name__ == "__main__":
    main()
