"""Does the EMA teacher move? bf16 storage vs fp32 teacher vs fp32 master weights, measured on
real SDFT train steps.

    python benchmarks/precision.py [--model tiny|PATH] [--steps 50] [--lr 5e-5] [--alpha 0.01]
        [--prompts 2] [--student_prompt 32] [--demonstration 32] [--completion 16] [--variants 0,1,2]

Each variant starts from the same weights and runs the same `--steps` SDFT steps (random token
batches, a new one per step, rollouts from the sampler, AdamW at a constant --lr, EMA teacher
--alpha). After every step the host updates a float64 reference EMA from the student weights
actually stored, phi_ref <- alpha * theta + (1 - alpha) * phi_ref, which is what the teacher is
meant to be. Reported after the last step:
  student moved   fraction of student weights that differ from their initial value
  teacher moved   the same for the stored teacher
  teacher lag     ||phi - phi_ref|| / ||phi_ref - phi_0||: the share of the teacher's intended
                  movement that is missing (0 = exact EMA, 1 = the teacher did not move at all)
  bytes/param     params + teacher + AdamW moments as stored
"""
import argparse
import os
import time


VARIANTS = {  # name: (param dtype, compute dtype, teacher dtype)
    "bf16 params, bf16 EMA teacher (ema_dtype='', the paper's code)": ("bfloat16", "bfloat16", None),
    "bf16 params, fp32 EMA teacher (teacher.ema_dtype=float32, default)": ("bfloat16", "bfloat16", "float32"),
    "fp32 master params + teacher, bf16 compute": ("float32", "bfloat16", None),
}


def main():
    from configs.common import real_model_path
    real = real_model_path("smollm2-135m-instruct")
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=real if os.path.isdir(real) else "tiny")
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--lr", type=float, default=5e-5)
    ap.add_argument("--alpha", type=float, default=0.01)
    ap.add_argument("--prompts", type=int, default=2)
    ap.add_argument("--student_prompt", type=int, default=32)
    ap.add_argument("--demonstration", type=int, default=32)
    ap.add_argument("--completion", type=int, default=16)
    ap.add_argument("--variants", default="", help="comma-separated rows of the table to run (0-based; default all)")
    args = ap.parse_args()

    import jax
    import jax.numpy as jnp
    import numpy as np

    from sdft_jax.model import load_pretrained
    from sdft_jax.core.sampler import SamplingConfig, make_generate
    from sdft_jax.core.train_state import OptimConfig, build_state, make_optimizer
    from sdft_jax.core.methods import sequences
    from sdft_jax.core.update import StepConfig, jit_train_step, make_train_step

    path = args.model
    if path == "tiny":  # configs/tiny.py's random Qwen2, built once under $SDFT_JAX_CACHE
        from configs.tiny import materialize
        path = materialize(0)[0]
    B, Ps, N = args.prompts, args.student_prompt, args.completion
    Pt = Ps + args.demonstration
    print(f"model={os.path.basename(path.rstrip('/'))} steps={args.steps} lr={args.lr} (constant AdamW) "
          f"ema_alpha={args.alpha} prompts={B} student_prompt={Ps} teacher_context={Pt} completion={N} "
          f"device={jax.devices()[0].platform}")
    print("| variant | student moved | teacher moved | teacher lag | bytes/param | s/step |")
    print("|---|---:|---:|---:|---:|---:|")
    rows = [int(i) for i in args.variants.split(",")] if args.variants else range(len(VARIANTS))
    for name, (param_dtype, compute_dtype, teacher_dtype) in (list(VARIANTS.items())[i] for i in rows):
        model = load_pretrained(path, dtype=param_dtype, compute_dtype=compute_dtype)
        V = model.config.vocab_size
        tx = make_optimizer(OptimConfig(lr=args.lr, warmup_steps=0, schedule="constant"))
        sc = StepConfig(ema_alpha=args.alpha, chunk_size=N)
        state, st_sh = build_state(model, model.mesh, tx, "ema", 0, teacher_dtype)
        theta0 = [np.asarray(x, np.float64) for x in jax.tree.leaves(state.params)]
        ref = [x.copy() for x in theta0]
        step = jit_train_step(make_train_step(model.graphdef, sc, tx), st_sh)
        generate = make_generate(model.graphdef, model.config, SamplingConfig(max_new_tokens=N))
        r = np.random.RandomState(0)
        seconds = []
        for k in range(args.steps):
            sp, tp = jnp.asarray(r.randint(0, V, (B, Ps)), jnp.int32), jnp.asarray(r.randint(0, V, (B, Pt)), jnp.int32)
            rollout = generate(state.params, sp, jnp.ones_like(sp), jax.random.key(k))
            batch = sequences(sp, jnp.ones_like(sp), tp, jnp.ones_like(tp), rollout.tokens, rollout.mask,
                               rollout.model_logprobs)
            t = time.perf_counter()
            state, metrics = step(state, batch)
            jax.block_until_ready(metrics)
            seconds.append(time.perf_counter() - t)
            ref = [args.alpha * np.asarray(p, np.float64) + (1 - args.alpha) * f
                   for p, f in zip(jax.tree.leaves(state.params), ref)]
        theta = [np.asarray(x, np.float64) for x in jax.tree.leaves(state.params)]
        phi = [np.asarray(x, np.float64) for x in jax.tree.leaves(state.teacher_params)]
        size = sum(x.size for x in theta0)
        student_moved = sum(int(np.sum(a != b)) for a, b in zip(theta, theta0)) / size
        teacher_moved = sum(int(np.sum(a != b)) for a, b in zip(phi, theta0)) / size
        lag = (np.sqrt(sum(np.sum((a - b) ** 2) for a, b in zip(phi, ref))) /
               np.sqrt(sum(np.sum((b - c) ** 2) for b, c in zip(ref, theta0))))
        nbytes = lambda tree: sum(x.nbytes for x in jax.tree.leaves(tree)) / size  # noqa: E731
        per_param = nbytes(state.params) + nbytes(state.teacher_params) + nbytes(state.opt_state)
        print(f"| {name} | {student_moved:.1%} | {teacher_moved:.1%} | {lag:.3f} | {per_param:.0f} | "
              f"{float(np.median(seconds[1:])):.2f} |", flush=True)


if __name__ == "__main__":
    main()
