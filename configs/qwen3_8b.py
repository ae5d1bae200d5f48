"""Qwen3-8B on a TPU pod slice (FSDP over all chips), the paper's recipe.

    python -m sdft_jax.main --config=configs/qwen3_8b.py:task=tooluse --workdir gs://BUCKET/runs/q3 \
        --config.model.path=/path/to/Qwen3-8B
"""
from configs import common


def get_config(arg=None):
    c = common.base_config()
    c.model.path = "Qwen3-8B"
    # As configs/qwen7b.py (benchmarks/memory.py measured Qwen2.5-7B on a v5p-8): full remat, 8 micro-batches.
    c.model.remat = "full"
    common.fp32_master_weights(c)
    c.batch.micro_batches = 8
    c.data.task, c.data.path = "tooluse", common.SHARED_TASKS["tooluse"]
    common.apply_task_and_method(c, common.parse_arg(arg, task="", method=""), common.SHARED_TASKS)
    c.steps = 200
    c.batch.prompts_per_step = 32
    c.mesh.data, c.mesh.fsdp, c.mesh.tensor = 1, -1, 1
    c.sampling.max_new_tokens = 2048
    return c
