"""Peak temporary memory of the SDFT loss + gradient, chunked vs unchunked, from the compiler.

    python benchmarks/loss_memory.py [--batch 8] [--length 2048] [--hidden 3584] [--vocab 151936]

Compiles value_and_grad of the forward-KL loss w.r.t. the student hidden states and LM head for
abstract inputs (nothing is allocated) and prints XLA's memory analysis per variant. Default
shapes: Qwen2.5-7B (hidden 3584, vocab 151,936), 8 sequences x 2048 completion tokens, bf16
hidden states and head, fp32 loss math.
"""
import argparse


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--length", type=int, default=2048)
    ap.add_argument("--hidden", type=int, default=3584)
    ap.add_argument("--vocab", type=int, default=151936)
    ap.add_argument("--chunks", default="0,1024,256,128")
    args = ap.parse_args()

    import jax
    import jax.numpy as jnp

    from sdft_jax.core import losses

    B, T, D, V = args.batch, args.length, args.hidden, args.vocab
    h = jax.ShapeDtypeStruct((B, T, D), jnp.bfloat16)
    w = jax.ShapeDtypeStruct((D, V), jnp.bfloat16)
    tgt = jax.ShapeDtypeStruct((B, T), jnp.int32)
    mask = jax.ShapeDtypeStruct((B, T), jnp.float32)

    def unchunked(hs, ws, ht, wt, tgt, mask):
        s_logits = jnp.einsum("btd,dv->btv", hs, ws, preferred_element_type=jnp.float32)
        t_logits = jnp.einsum("btd,dv->btv", ht, wt, preferred_element_type=jnp.float32)
        d = losses.per_token_divergence(s_logits, jax.lax.stop_gradient(t_logits))
        return losses.aggregate(d, mask)

    def chunked(chunk):
        def fn(hs, ws, ht, wt, tgt, mask):
            st = losses.chunked_token_stats(hs, ws, tgt, jax.lax.stop_gradient(ht), jax.lax.stop_gradient(wt),
                                            chunk_size=chunk)
            return losses.aggregate(st["divergence"], mask)
        return fn

    full_logits_gib = B * T * V * 4 / 2**30
    print(f"shapes: batch={B} completion_len={T} hidden={D} vocab={V}; one fp32 [B,T,V] array = "
          f"{full_logits_gib:.1f} GiB; backend={jax.devices()[0].platform}")
    print("| variant | temp memory (GiB) | args (GiB) | output (GiB) |")
    print("|---|---:|---:|---:|")
    for c in [int(x) for x in args.chunks.split(",")]:
        fn = unchunked if c == 0 else chunked(c)
        compiled = jax.jit(jax.value_and_grad(fn, argnums=(0, 1))).lower(h, w, h, w, tgt, mask).compile()
        m = compiled.memory_analysis()
        name = "unchunked (full [B,T,V] logits)" if c == 0 else f"chunked, {c} positions per chunk"
        print(f"| {name} | {m.temp_size_in_bytes / 2**30:.2f} | {m.argument_size_in_bytes / 2**30:.2f} | "
              f"{m.output_size_in_bytes / 2**30:.2f} |", flush=True)


if __name__ == "__main__":
    main()
