"""SmolLM2-135M-Instruct (real weights, CPU-possible). Build the folder offline with
../shared/tools/real_models.py; pass `:task=tooluse|science|medical,method=sdft|sft`.

    python -m sdft_jax.main --config=configs/smollm2_135m.py:task=science --workdir runs/smol
"""
from configs import common


def get_config(arg=None):
    c = common.base_config()
    c.model.path = common.real_model_path("smollm2-135m-instruct")
    c.model.dtype = "float32"
    c.data.task, c.data.path = "science", common.SHARED_TASKS["science"]
    common.apply_task_and_method(c, common.parse_arg(arg, task="", method=""), common.SHARED_TASKS)
    c.steps = 50
    c.batch.prompts_per_step = 8
    c.data.max_student_prompt = 512
    c.data.max_teacher_prompt = 1024
    c.sampling.max_new_tokens = 128
    c.loss.chunk_size = 64
    c.checkpoint.every = 25
    return c
