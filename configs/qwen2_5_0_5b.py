"""Qwen2.5-Coder-0.5B-Instruct (real weights built offline by ../shared/tools/real_models.py).

    python -m sdft_jax.main --config=configs/qwen2_5_0_5b.py:task=tooluse --workdir runs/q05
"""
from configs import common


def get_config(arg=None):
    c = common.base_config()
    c.model.path = common.real_model_path("qwen2.5-0.5b-instruct")
    c.model.dtype = "float32"
    # On the 24 GiB CPU box the step's temporaries without remat (15.9 GiB at 2 prompts x 64 new
    # tokens, benchmarks/memory.py) do not fit next to the 7.4 GiB of arguments; with `full`: 11.0 GiB.
    c.model.remat = "full"
    c.data.task, c.data.path = "tooluse", common.SHARED_TASKS["tooluse"]
    common.apply_task_and_method(c, common.parse_arg(arg, task="", method=""), common.SHARED_TASKS)
    c.steps = 50
    c.batch.prompts_per_step = 8
    c.data.max_student_prompt = 1024
    c.data.max_teacher_prompt = 2048
    c.sampling.max_new_tokens = 256
    c.loss.chunk_size = 64
    c.checkpoint.every = 25
    return c
