"""Qwen2.5-7B-Instruct, the paper's setting: full fine-tuning, AdamW lr 5e-5 (wd 0), cosine with
10 warmup steps, 32 prompts per step, EMA teacher alpha 0.01, forward KL, skip 3 tokens,
rollouts at temperature 1 up to 2048 tokens; bf16 matmuls on fp32 master weights (the paper: bf16
storage). Mesh: FSDP over every chip of the slice (TPU v5p-8 and up). Each micro-batch's prompts
must divide over the chips: 32 / 8 = 4 fits 4 chips (v5p-8); on v5p-16 (8 chips) add
--config.batch.micro_batches=4 (`python -m sdft_jax.aot` checks a slice's memory and shapes from a CPU).

    python -m sdft_jax.main --config=configs/qwen7b.py:task=science --workdir gs://BUCKET/runs/q7 \
        --config.model.path=/path/to/Qwen2.5-7B-Instruct
"""
from configs import common


def get_config(arg=None):
    c = common.base_config()
    c.model.path = "Qwen2.5-7B-Instruct"
    # benchmarks/memory.py: on a v5p-8 (4 chips, 95 GiB) remat=dots_no_batch with 4 micro-batches needs
    # ~177 GiB/device; full remat with 8 micro-batches ~70 GiB with fp32 master weights (XLA:CPU
    # estimate; arguments exact).
    c.model.remat = "full"
    common.fp32_master_weights(c)
    c.batch.micro_batches = 8
    c.data.task, c.data.path = "tooluse", common.SHARED_TASKS["tooluse"]
    common.apply_task_and_method(c, common.parse_arg(arg, task="", method=""), common.SHARED_TASKS)
    c.steps = 200  # ~2 epochs of the tool-use training split at 32 prompts per step
    c.batch.prompts_per_step = 32
    c.mesh.data, c.mesh.fsdp, c.mesh.tensor = 1, -1, 1
    c.sampling.max_new_tokens = 2048
    c.checkpoint.every = 50
    c.eval.every = 50
    return c
