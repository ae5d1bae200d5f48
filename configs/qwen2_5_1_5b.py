"""Qwen2.5-1.5B-Instruct on one GPU (bf16 matmuls, fp32 master weights, remat), the paper's hyper-parameters otherwise.

    python -m sdft_jax.main --config=configs/qwen2_5_1_5b.py:task=science --workdir runs/q15 \
        --config.model.path=/path/to/Qwen2.5-1.5B-Instruct
"""
from configs import common


def get_config(arg=None):
    c = common.base_config()
    c.model.path = "Qwen2.5-1.5B-Instruct"
    c.model.remat = "dots_no_batch"
    common.fp32_master_weights(c)
    c.data.task, c.data.path = "science", common.SHARED_TASKS["science"]
    common.apply_task_and_method(c, common.parse_arg(arg, task="", method=""), common.SHARED_TASKS)
    c.steps = 200
    c.batch.prompts_per_step = 32
    c.batch.micro_batches = 4
    c.data.max_teacher_prompt = 4096
    c.sampling.max_new_tokens = 2048
    return c
