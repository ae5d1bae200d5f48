"""Per-device memory of the compiled SDFT train step and the sampler for a model on a mesh, from
the compiler's memory analysis of abstract inputs (no weights are loaded or allocated).

    python benchmarks/memory.py [--model qwen2.5-7b|qwen3-8b|qwen2.5-1.5b|qwen2.5-0.5b|tiny] [--devices 8]
        [--mesh 1,8,1] [--prompts 32]
        [--micro_batches 4] [--lengths 1024,2048,2048] [--remat dots_no_batch] [--chunk 256]
        [--param_dtype bfloat16] [--teacher_dtype float32] [--hbm_gib 95]
        [--lora_rank 16 --base_dtype bfloat16|int8|nf4 --lora_targets q,k,v,o,gate,up,down]
        [--rollout_batches 1] [--teacher_model qwen2.5-7b]

It compiles for `--devices` virtual CPU devices (XLA_FLAGS is set before jax is imported), so
argument sizes (params, EMA teacher, AdamW moments, batch) are exact per device; temporary
sizes are XLA:CPU's schedule and only indicate what a TPU/GPU compile would need. Device HBM:
TPU v5p 95 GiB, v4 32 GiB, H100 80 GiB.
"""
import argparse
import os

from sdft_jax.aot.known_models import HF_CONFIGS
from sdft_jax.model.random_checkpoint import qwen2_hf_config

MODELS = {"qwen2.5-7b": HF_CONFIGS["Qwen2.5-7B-Instruct"], "qwen3-8b": HF_CONFIGS["Qwen3-8B"],
          "qwen2.5-1.5b": HF_CONFIGS["Qwen2.5-1.5B-Instruct"], "qwen2.5-0.5b": HF_CONFIGS["Qwen2.5-0.5B-Instruct"],
          "tiny": qwen2_hf_config()}  # configs/tiny.py's random Qwen2 (2 layers, d=64): the CI smoke test


def fused_decode_sh(cfg, mesh, abstract):
    from sdft_jax import sharding as shd
    from sdft_jax.model import param_shardings
    return param_shardings(cfg, mesh, abstract, shd.DECODE_RULES)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="qwen2.5-7b", choices=sorted(MODELS))
    ap.add_argument("--devices", type=int, default=8)
    ap.add_argument("--mesh", default="1,-1,1", help="data,fsdp,tensor")
    ap.add_argument("--prompts", type=int, default=32)
    ap.add_argument("--micro_batches", type=int, default=4)
    ap.add_argument("--lengths", default="1024,2048,2048", help="student prompt, teacher context, completion")
    ap.add_argument("--remat", default="dots_no_batch")
    ap.add_argument("--chunk", type=int, default=256)
    ap.add_argument("--param_dtype", default="bfloat16", help="float32 = fp32 master weights (bf16 compute)")
    ap.add_argument("--teacher_dtype", default="float32", help="teacher.ema_dtype; '' = the param dtype")
    ap.add_argument("--hbm_gib", type=float, default=95.0)
    ap.add_argument("--query_block", type=int, default=0,
                    help="causal attention query block (0 = the model's default, 256; >= T = unblocked)")
    ap.add_argument("--lora_rank", type=int, default=0, help="> 0: LoRA; the state holds the adapters only")
    ap.add_argument("--lora_targets", default="q,k,v,o,gate,up,down")
    ap.add_argument("--base_dtype", default="bfloat16", help="LoRA base: bfloat16 | float32 | int8 | nf4")
    ap.add_argument("--rollout_batches", type=int, default=1, help="sampling.rollout_batches")
    ap.add_argument("--fused", type=int, default=1, help="also compile the fused step (step.py), what runs")
    ap.add_argument("--teacher_model", default="", choices=[""] + sorted(MODELS),
                    help="teacher.kind=external: this model (frozen, --teacher_dtype or bf16) teaches --model")
    args = ap.parse_args()
    os.environ["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={args.devices}"

    import jax
    import jax.numpy as jnp

    from sdft_jax import sharding as shd
    from sdft_jax.model import ModelConfig, abstract_model, param_shardings
    from sdft_jax.model.lora import split_adapters
    from sdft_jax.core import methods
    from sdft_jax.core.sampler import SamplingConfig, make_generate
    from sdft_jax.core.train_state import OptimConfig, abstract_state, make_optimizer
    from sdft_jax.core.update import StepConfig, make_train_step

    quantized = args.base_dtype in ("int8", "nf4")
    lora_kw = dict(query_block=args.query_block) if args.query_block else {}  # the model's default otherwise
    if args.lora_rank:
        lora_kw.update(lora_rank=args.lora_rank, lora_targets=tuple(args.lora_targets.split(",")),
                       base_quant=args.base_dtype if quantized else "")
        args.param_dtype = "bfloat16" if quantized else args.base_dtype
    cfg = ModelConfig.from_hf_dict(MODELS[args.model], param_dtype=args.param_dtype, dtype="bfloat16",
                                   remat=args.remat, **lora_kw)
    mesh = shd.make_mesh(*[int(x) for x in args.mesh.split(",")])
    graphdef, abstract = abstract_model(cfg)
    p_sh = param_shardings(cfg, mesh, abstract)
    tx = make_optimizer(OptimConfig())
    trainable, frozen = split_adapters(abstract) if args.lora_rank else (abstract, None)
    train_sh, frozen_sh = split_adapters(p_sh) if args.lora_rank else (p_sh, None)
    teacher_graphdef = ext = ext_sh = None
    if args.teacher_model:  # an external teacher: its whole params in the state, sharded by its own config
        t_cfg = ModelConfig.from_hf_dict(MODELS[args.teacher_model], param_dtype=args.teacher_dtype or "bfloat16",
                                         dtype="bfloat16", remat=args.remat)
        teacher_graphdef, ext = abstract_model(t_cfg)
        ext_sh = param_shardings(t_cfg, mesh, ext)
    kind = "external" if args.teacher_model else "ema"
    abs_state, st_sh = abstract_state(trainable, tx, kind, args.teacher_dtype or None, train_sh, mesh, frozen,
                                      frozen_sh, ext, ext_sh)
    Ps, Pt, N = (int(x) for x in args.lengths.split(","))
    B = args.prompts
    bsh = shd.batch_sharding(mesh, 2)

    def s(shape, dtype=jnp.int32):
        return jax.ShapeDtypeStruct(shape, dtype, sharding=bsh)
    batch = {"student_tokens": s((B, Ps + N)), "student_mask": s((B, Ps + N)), "completion_mask": s((B, N)),
             "sampler_logprobs": s((B, N), jnp.float32), "teacher_tokens": s((B, Pt + N)),
             "teacher_mask": s((B, Pt + N))}
    step = make_train_step(graphdef, StepConfig(chunk_size=args.chunk, micro_batches=args.micro_batches,
                                                teacher_kind=kind), tx, teacher_graphdef=teacher_graphdef)
    jitted = jax.jit(step, in_shardings=(st_sh, {k: bsh for k in batch}),
                     out_shardings=(st_sh, shd.replicated(mesh)), donate_argnums=(0,))
    gib = 2 ** 30
    # Counted unquantized (NF4 codes pack two weights per byte).
    n_params = sum(x.size for x in jax.tree.leaves(abstract_model(cfg.replace(base_quant=""))[1]))
    what = (f"LoRA rank {args.lora_rank} on {args.lora_targets} over a frozen {args.base_dtype} base "
            f"({sum(x.size for x in jax.tree.leaves(trainable)) / 1e6:.1f}M trainable), fp32 adapters / EMA"
            if args.lora_rank else f"{args.param_dtype}, teacher {args.teacher_dtype or args.param_dtype}")
    if args.teacher_model:
        what += (f"; external teacher {args.teacher_model} "
                 f"({sum(x.size for x in jax.tree.leaves(ext)) / 1e9:.2f}B params, {args.teacher_dtype or 'bfloat16'})")
    print(f"{args.model}: {n_params / 1e9:.2f}B params ({what}, compute bfloat16), mesh {dict(mesh.shape)} on "
          f"{args.devices} devices, {B} prompts x (student {Ps} / teacher {Pt} / completion {N}), "
          f"{args.micro_batches} micro-batches, remat={args.remat}, loss chunk {args.chunk}")
    print("| program | arguments GiB/device | temporaries GiB/device | total GiB/device | fits in "
          f"{args.hbm_gib:.0f} GiB |")
    print("|---|---:|---:|---:|---|")
    m = jitted.lower(abs_state, batch).compile().memory_analysis()
    total = (m.argument_size_in_bytes + m.temp_size_in_bytes) / gib
    print(f"| SDFT train step | {m.argument_size_in_bytes / gib:.2f} | {m.temp_size_in_bytes / gib:.2f} | "
          f"{total:.2f} | {'yes' if total <= args.hbm_gib else 'no'} |", flush=True)
    gen = make_generate(graphdef, cfg, SamplingConfig(max_new_tokens=N, rollout_batches=args.rollout_batches),
                        cache_sharding=jax.sharding.NamedSharding(
        mesh, jax.sharding.PartitionSpec(None, shd.BATCH_AXES, None, "tensor", None)))
    p_abs = jax.tree.map(lambda x, sh: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sh), abstract, p_sh)
    mg = gen.lower(p_abs, s((B, Ps)), s((B, Ps)), jax.random.key(0)).compile().memory_analysis()
    total = (mg.argument_size_in_bytes + mg.temp_size_in_bytes) / gib
    print(f"| sampler ({B} x {Ps}+{N}, {args.rollout_batches} rollout batches) | {mg.argument_size_in_bytes / gib:.2f} | {mg.temp_size_in_bytes / gib:.2f} | "
          f"{total:.2f} | {'yes' if total <= args.hbm_gib else 'no'} |", flush=True)
    if args.fused:  # what the run executes: one program, weights gathered over fsdp for the rollout
        from sdft_jax.core.step import make_step, make_rollout
        sc = StepConfig(chunk_size=args.chunk, micro_batches=args.micro_batches, teacher_kind=kind)
        fused = make_step(graphdef, cfg, sc, SamplingConfig(max_new_tokens=N, rollout_batches=args.rollout_batches),
                          tx, num_generations=1, state_shardings=st_sh, input_sharding=shd.batch_sharding(mesh, 1),
                          metrics_sharding=shd.replicated(mesh), teacher_graphdef=teacher_graphdef,
                          decode_shardings=fused_decode_sh(cfg, mesh, abstract),
                          cache_sharding=jax.sharding.NamedSharding(
                              mesh, jax.sharding.PartitionSpec(None, shd.BATCH_AXES, None, "tensor", None)))
        shapes = {"student_prompt": (B, Ps), "student_prompt_mask": (B, Ps), "teacher_prompt": (B, Pt),
                  "teacher_prompt_mask": (B, Pt)}
        inputs = {k: s(shapes[k]) for k in methods.SDFT.inputs}
        mf = fused.lower(abs_state, inputs, jax.random.key(0)).compile().memory_analysis()
        total = (mf.argument_size_in_bytes + mf.temp_size_in_bytes) / gib
        print(f"| fused SDFT step (rollout + update, one program) | {mf.argument_size_in_bytes / gib:.2f} | "
              f"{mf.temp_size_in_bytes / gib:.2f} | {total:.2f} | {'yes' if total <= args.hbm_gib else 'no'} |")
        # The rollout alone, with the decode shardings and with the training ones: the collectives
        # that run once per decoded token (inside the decode loop).
        from sdft_jax.runtime.hlo import collectives_in_loops
        for label, dsh in (("decode shardings (gathered over fsdp once)", fused_decode_sh(cfg, mesh, abstract)),
                           ("training shardings", None)):
            rollout = make_rollout(graphdef, cfg, SamplingConfig(max_new_tokens=N), decode_shardings=dsh)
            text = jax.jit(rollout).lower(abs_state, inputs, jax.random.key(0)).compile().as_text()
            print(f"collectives inside the rollout's loops, {label}: {dict(collectives_in_loops(text)) or 'none'}")


if __name__ == "__main__":
    main()
