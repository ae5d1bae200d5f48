"""How far a quantized QLoRA base is from the full-precision model, on real text.

    python benchmarks/quant_error.py --model $SDFT_REAL_MODELS/smollm2-135m-instruct [--rows 16]

Rows of the SDFT tool-use eval set (prompt + golden answer, chat template, the last 256 tokens)
through the model loaded five ways; against float32 weights and compute it prints, over real
tokens: the mean KL(fp32 || variant) of the next-token distributions, top-1 agreement and the
largest |logit| difference. LoRA adapters are added with B = 0, so only the base differs.
"""
import argparse
import json
import os


VARIANTS = [  # (label, load_pretrained kwargs)
    ("bfloat16 weights + compute", dict(dtype="bfloat16")),
    ("int8 base, float32 compute", dict(dtype="float32", base_quant="int8")),
    ("nf4 base, float32 compute", dict(dtype="float32", base_quant="nf4")),
    ("int8 base, bfloat16 compute (QLoRA run)", dict(dtype="bfloat16", base_quant="int8")),
    ("nf4 base, bfloat16 compute (QLoRA run)", dict(dtype="bfloat16", base_quant="nf4")),
]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--data", default=os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data",
                                                   "tooluse", "sdft_tooluse_eval.jsonl"))
    ap.add_argument("--rows", type=int, default=16)
    ap.add_argument("--max_tokens", type=int, default=256)
    args = ap.parse_args()

    import jax
    import numpy as np

    from sdft_jax.model import load_pretrained, load_tokenizer

    tok = load_tokenizer(args.model)
    rows = [json.loads(line) for line in open(args.data)][: args.rows]
    texts = [tok.apply_chat_template([{"role": "user", "content": r["prompt"]},
                                      {"role": "assistant", "content": str(r["golden_answer"])}], tokenize=False)
             for r in rows]
    enc = [tok(t)["input_ids"][-args.max_tokens:] for t in texts]
    T = max(len(e) for e in enc)
    tokens = np.zeros((len(enc), T), np.int32)
    mask = np.zeros((len(enc), T), np.int32)
    for i, e in enumerate(enc):  # left padding, as everywhere in the project
        tokens[i, T - len(e):], mask[i, T - len(e):] = e, 1
    real = mask.astype(bool)

    def log_probs(**kw):
        model = load_pretrained(args.model, tokenizer=False, **({"lora_rank": 8, "lora_targets": ("q",)}
                                                               if kw.get("base_quant") else {}), **kw)
        logits = np.asarray(model(tokens, mask), np.float64)
        del model
        jax.clear_caches()
        return logits - np.logaddexp.reduce(logits, axis=-1, keepdims=True)

    ref = log_probs(dtype="float32")
    print(f"{args.model}: {len(enc)} rows of {os.path.relpath(args.data)}, {int(real.sum())} real tokens")
    print("| variant | mean KL(fp32 \\|\\| variant) nats/token | top-1 agreement | max \\|logit diff\\| |")
    print("|---|---:|---:|---:|")
    for label, kw in VARIANTS:
        lp = log_probs(**kw)
        kl = (np.exp(ref) * (ref - lp)).sum(-1)[real].mean()
        agree = (ref.argmax(-1) == lp.argmax(-1))[real].mean()
        diff = np.abs((ref - ref.max(-1, keepdims=True)) - (lp - lp.max(-1, keepdims=True)))[real].max()
        print(f"| {label} | {kl:.4f} | {agree:.3f} | {diff:.2f} |", flush=True)


if __name__ == "__main__":
    main()
