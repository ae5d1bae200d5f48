"""SmolLM2-135M-Instruct (real weights, CPU-possible). Build the folder offline with
../shared/tools/real_models.py; pass `:task=tooluse|science|medical,method=sdft|sft`.

    python -m sdft_jax.main --config=configs/smollm2_135m.py:task=science --workdir runs/smol
"""
from sdft_jax import config_defaults


def get_config(arg=None):
    c = config_defaults.base_config()
    c.model.path = config_defaults.real_model_path("smollm2-135m-instruct")
    c.model.dtype = "float32"
    c.data.task, c.data.path = "science", config_defaults.SHARED_TASKS["science"]
    config_defaults.apply_task_and_method(c, config_defaults.parse_arg(arg, task="", method=""), config_defaults.SHARED_TASKS)
    c.steps = 50
    c.batch.prompts_per_step = 8
    c.data.max_student_prompt = 512
    c.data.max_teacher_prompt = 1024
    c.sampling.max_new_tokens = 128
    c.loss.chunk_size = 64
    c.checkpoint.every = 25
    return c
