"""Wall-clock per optimizer step of SDFT and SFT at matched shapes, split into phases.

    python benchmarks/step_cost.py [--model tiny|PATH] [--prompts 8] [--student_prompt 128]
        [--demonstration 256] [--completion 256] [--dtype float32] [--repeats 3] [--peak_tflops 0]
        [--lora_rank 16 [--base_dtype int8|nf4]]

Synthetic token batches with the paper's structure: student prompt Ps, teacher context
Pt = Ps + demonstration + template, completion N (SFT's target = the demonstration, padded to N).
Rollouts run the full N tokens (no stop token), the worst case. Phases, each its own jitted
program timed after one warm-up (median of --repeats):
  generate        the sampler: prefill + N decode steps
  teacher_fwd     the teacher forward on [teacher context + completion] (stop-gradient, no backward)
  sdft_step       the whole SDFT train step (teacher forward + student forward/backward + AdamW + EMA)
  sft_step        the SFT step (student forward/backward on prompt + demonstration + AdamW)
student+update = sdft_step - teacher_fwd. SDFT/SFT ratio = (generate + sdft_step) / sft_step.
--torch_reference also times the same model in transformers (torch, CPU threads as configured):
the teacher forward (no grad) and the SFT step (forward + backward + AdamW) at the same shapes.
FLOPs: 2 x params per token forward, 4 x backward (attention ignored); MFU needs --peak_tflops.
"""
import argparse
import dataclasses
import os

from _timing import median_seconds


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="tiny")
    ap.add_argument("--prompts", type=int, default=8)
    ap.add_argument("--student_prompt", type=int, default=128)
    ap.add_argument("--demonstration", type=int, default=256)
    ap.add_argument("--completion", type=int, default=256)
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--remat", default="none")
    ap.add_argument("--chunk_size", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--peak_tflops", type=float, default=0.0, help="per device, for MFU")
    ap.add_argument("--torch_reference", action="store_true")
    ap.add_argument("--lora_rank", type=int, default=0,
                    help="> 0: also time the SDFT and SFT steps with LoRA on every projection (same run)")
    ap.add_argument("--base_dtype", default="", help="LoRA base: '' = --dtype, or int8 | nf4")
    ap.add_argument("--query_block", type=int, default=0,
                    help="causal attention query block (0 = the model's default, 256; >= T = unblocked)")
    args = ap.parse_args()

    import jax
    import jax.numpy as jnp
    import numpy as np
    from flax import nnx

    from sdft_jax import sharding as shd
    from sdft_jax.model import load_pretrained
    from sdft_jax.model.lora import split_adapters
    from sdft_jax.core.sampler import SamplingConfig, make_generate
    from sdft_jax.core.train_state import OptimConfig, build_state, make_optimizer
    from sdft_jax.core.methods import sequences
    from sdft_jax.core.update import StepConfig, jit_train_step, make_train_step

    block = dict(query_block=args.query_block) if args.query_block else {}  # the model's default otherwise
    path = args.model
    if path == "tiny":  # configs/tiny.py's random Qwen2, built once under $SDFT_JAX_CACHE
        from configs.tiny import materialize
        path = materialize(0)[0]
    mesh = shd.make_mesh(1, -1, 1)
    model = load_pretrained(path, dtype=args.dtype, mesh=mesh, remat=args.remat, **block)
    B, Ps, N = args.prompts, args.student_prompt, args.completion
    Pt = Ps + args.demonstration + 32  # + the template's words
    V = model.config.vocab_size
    r = np.random.RandomState(0)
    sp, tp = r.randint(0, V, (B, Ps)).astype(np.int32), r.randint(0, V, (B, Pt)).astype(np.int32)
    sm, tm = np.ones_like(sp), np.ones_like(tp)
    sh = shd.batch_sharding(mesh, 2)
    sp, sm, tp, tm = (jax.device_put(x, sh) for x in (sp, sm, tp, tm))
    generate = make_generate(model.graphdef, model.config, SamplingConfig(max_new_tokens=N, temperature=1.0))
    rollout = generate(model.params, sp, sm, jax.random.key(0))
    sdft = sequences(sp, sm, tp, tm, rollout.tokens, rollout.mask, rollout.model_logprobs)
    demo = jnp.asarray(r.randint(0, V, (B, N)), jnp.int32)
    demo_mask = jnp.asarray((np.arange(N)[None] < min(args.demonstration, N)).repeat(B, 0), jnp.int32)
    sft = sequences(sp, sm, None, None, demo, demo_mask)

    tx = make_optimizer(OptimConfig(lr=1e-5, warmup_steps=0))
    graphdef = model.graphdef

    def state_and_step(method, m=model):
        sc = StepConfig(method=method, chunk_size=args.chunk_size)
        # A copy of the weights: the step donates the state, and generate / the other method reuse them.
        state, st_sh = build_state(dataclasses.replace(m, params=jax.tree.map(jnp.copy, m.params)), mesh, tx,
                                   sc.teacher_kind, 0)
        batch = sdft if method == "sdft" else sft
        step = jit_train_step(make_train_step(m.graphdef, sc, tx), st_sh, {k: sh for k in batch}, shd.replicated(mesh))
        holder = {"state": state}

        def run():
            holder["state"], m = step(holder["state"], batch)
            jax.block_until_ready(m)
        return run

    @jax.jit
    def teacher_forward(params, tokens, mask):
        m = nnx.merge(graphdef, params)
        h, _ = m.hidden_states(tokens, None, mask)
        return m.logits(h[:, -N - 1:-1]).sum()

    t_gen = median_seconds(lambda: jax.block_until_ready(generate(model.params, sp, sm, jax.random.key(1))), args.repeats)
    t_teacher = median_seconds(lambda: jax.block_until_ready(
        teacher_forward(model.params, sdft["teacher_tokens"], sdft["teacher_mask"])), args.repeats)
    t_sdft = median_seconds(state_and_step("sdft"), args.repeats)
    t_sft = median_seconds(state_and_step("sft"), args.repeats)

    n_params = sum(x.size for x in jax.tree.leaves(model.params))
    flops = {"generate": 2 * n_params * B * (Ps + N), "teacher_fwd": 2 * n_params * B * (Pt + N),
             "sdft_step": 2 * n_params * B * (Pt + N) + 6 * n_params * B * (Ps + N),
             "sft_step": 6 * n_params * B * (Ps + N)}
    times = {"generate": t_gen, "teacher_fwd": t_teacher, "sdft_step": t_sdft, "sft_step": t_sft}
    dev = jax.devices()[0]
    print(f"model={os.path.basename(path.rstrip('/'))} params={n_params / 1e6:.1f}M dtype={args.dtype} "
          f"remat={args.remat} prompts={B} student_prompt={Ps} teacher_context={Pt} completion={N} "
          f"device={dev.platform}:{getattr(dev, 'device_kind', '')} x{jax.device_count()}")
    print("| phase | seconds | TFLOP/s | MFU |")
    print("|---|---:|---:|---:|")
    for k, t in times.items():
        tf = flops[k] / t / 1e12
        mfu = f"{tf / (args.peak_tflops * jax.device_count()):.1%}" if args.peak_tflops else "-"
        print(f"| {k} | {t:.3f} | {tf:.3f} | {mfu} |")
    print(f"| student fwd+bwd+update (sdft_step - teacher_fwd) | {t_sdft - t_teacher:.3f} | | |")
    print(f"\nSDFT step (generate + sdft_step) = {t_gen + t_sdft:.3f} s; SFT step = {t_sft:.3f} s; "
          f"ratio SDFT/SFT = {(t_gen + t_sdft) / t_sft:.2f}x; "
          f"completion tokens/s (SDFT) = {B * N / (t_gen + t_sdft):,.0f}")
    if args.lora_rank:
        quantized = args.base_dtype in ("int8", "nf4")
        lm = load_pretrained(path, dtype=args.dtype, mesh=mesh, remat=args.remat, **block, lora_rank=args.lora_rank,
                             lora_targets=("q", "k", "v", "o", "gate", "up", "down"),
                             base_quant=args.base_dtype if quantized else "")
        t_lora = {k: median_seconds(state_and_step(k, lm), args.repeats) for k in ("sdft", "sft")}
        n_train = sum(x.size for x in jax.tree.leaves(split_adapters(lm.params)[0]))
        print(f"\nLoRA rank {args.lora_rank} on q,k,v,o,gate,up,down ({n_train / 1e6:.2f}M trainable, base "
              f"{args.base_dtype or args.dtype}), same batches:")
        print("| step | full fine-tuning s | LoRA s | LoRA / full |")
        print("|---|---:|---:|---:|")
        for k, t in (("sdft", t_sdft), ("sft", t_sft)):
            print(f"| {k}_step | {t:.3f} | {t_lora[k]:.3f} | {t_lora[k] / t:.2f} |")
    if args.torch_reference:
        _torch_reference(path, args.dtype, np.asarray(sdft["teacher_tokens"]), np.asarray(sft["student_tokens"]),
                         args.repeats, {"teacher_fwd": t_teacher, "sft_step": t_sft})


def _torch_reference(path, dtype, teacher_tokens, student_tokens, repeats, ours):
    import torch
    from transformers import AutoModelForCausalLM
    model = AutoModelForCausalLM.from_pretrained(path, dtype=getattr(torch, dtype))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5)
    teacher, student = torch.tensor(teacher_tokens, dtype=torch.long), torch.tensor(student_tokens, dtype=torch.long)

    def forward():
        with torch.no_grad():
            model(teacher)

    def sft_step():
        model(student, labels=student).loss.backward()
        opt.step()
        opt.zero_grad()
    theirs = {"teacher_fwd": median_seconds(forward, repeats), "sft_step": median_seconds(sft_step, repeats)}
    print(f"\ntransformers {__import__('transformers').__version__} / torch {torch.__version__} "
          f"({torch.get_num_threads()} threads, attention {model.config._attn_implementation}), same shapes:")
    print("| phase | sdft_jax s | transformers s | sdft_jax speed-up |")
    print("|---|---:|---:|---:|")
    for k in theirs:
        print(f"| {k} | {ours[k]:.3f} | {theirs[k]:.3f} | {theirs[k] / ours[k]:.2f}x |")


if __name__ == "__main__":
    main()
