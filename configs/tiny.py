"""Random tiny Qwen2 + toy demonstrations, built in the workdir: a full run in about a minute on CPU.

    python -m sdft_jax.main --config=configs/tiny.py --workdir /tmp/tiny [--config.method=sft]
"""
from sdft_jax import config_defaults


def get_config(arg=None):
    c = config_defaults.base_config()
    config_defaults.apply_task_and_method(c, config_defaults.parse_arg(arg))
    c.steps = 6
    c.model.path = "tiny"
    c.model.dtype = "float32"
    c.data.path = "tiny"
    c.data.eval_split = "train"
    c.data.max_student_prompt = 128
    c.data.max_teacher_prompt = 256
    c.batch.prompts_per_step = 8
    c.optim.lr = 1e-3
    c.optim.warmup_steps = 2
    c.loss.chunk_size = 16
    c.sampling.max_new_tokens = 24
    c.checkpoint.every = 3
    c.eval.every = 3
    c.eval.examples = 8
    c.log.samples_every = 3
    return c
