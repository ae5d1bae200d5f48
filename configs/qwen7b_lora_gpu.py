"""Qwen2.5-7B-Instruct, SDFT with LoRA on ONE GPU: the paper's recipe (32 prompts per step, EMA
teacher alpha 0.01, forward KL, skip 3 tokens, rollouts at temperature 1 up to 2048 tokens) with
rank-16 adapters (alpha 32, as the 7B LoRA replication in ../shared/reference/sdft_peers.md) on
every projection, lr 1e-4 (LoRA's usual ~10x the full fine-tuning lr of 5e-5).

    python -m sdft_jax.main --config=configs/qwen7b_lora_gpu.py:task=science --workdir runs/q7_lora \
        --config.model.path=/path/to/Qwen2.5-7B-Instruct                       # 80 GB GPU, bf16 base
    python -m sdft_jax.main --config=configs/qwen7b_lora_gpu.py:base_dtype=nf4 ...   # 24 GB GPU (QLoRA)

Memory plan (benchmarks/memory.py, docs/PERFORMANCE.md "LoRA / QLoRA"): bf16 base, full remat,
8 micro-batches: step 59.4 GiB, sampler 57.2 GiB (fits 80 GB). int8 / nf4 base, 32 micro-batches
and the rollouts in 2 groups: step 16.1 / 13.4 GiB, sampler 19.0 / 16.3 GiB (fits 24 GB).
Outputs: WORKDIR/export (merged HF model) and WORKDIR/export_adapter (PEFT adapter).
"""
from configs import common

PLANS = {  # base_dtype -> (micro-batches, rollout groups)
    "bfloat16": (8, 1),
    "int8": (32, 2),
    "nf4": (32, 2),
}


def get_config(arg=None):
    args = common.parse_arg(arg, task="", method="", base_dtype="bfloat16")
    if args.base_dtype not in PLANS:
        raise ValueError(f"base_dtype={args.base_dtype!r}; expected one of {', '.join(PLANS)}")
    c = common.base_config()
    c.model.path = "Qwen2.5-7B-Instruct"
    c.model.dtype, c.model.compute_dtype, c.model.remat = "bfloat16", "bfloat16", "full"
    c.model.lora.update(dict(rank=16, alpha=32.0, targets="q,k,v,o,gate,up,down", base_dtype=args.base_dtype))
    c.batch.micro_batches, c.sampling.rollout_batches = PLANS[args.base_dtype]
    c.data.task, c.data.path = "tooluse", common.SHARED_TASKS["tooluse"]
    common.apply_task_and_method(c, args, common.SHARED_TASKS)
    c.optim.lr = 1e-4
    c.steps = 200
    c.batch.prompts_per_step = 32
    c.mesh.data, c.mesh.fsdp, c.mesh.tensor = 1, -1, 1
    c.sampling.max_new_tokens = 2048
    c.checkpoint.every = 50
    c.eval.every = 50
    return c
