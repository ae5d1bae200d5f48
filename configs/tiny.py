"""Random tiny Qwen2 + toy demonstrations: a full run in about a minute on CPU.

    python -m sdft_jax.main --config=configs/tiny.py[:seed=N] --workdir /tmp/tiny [--config.method=sft]
    python -m sdft_jax.main --config=configs/tiny.py:teacher=external --workdir /tmp/tiny_external

The config materializes its inputs (a random checkpoint from our initializer, the byte tokenizer,
64 toy string tasks) once per seed under $SDFT_JAX_CACHE/tiny/seedN (default ~/.cache/sdft_jax), so
the library only ever sees real paths. The checkpoint is built in a child process: parsing a config
must not start JAX (multi-process runs call jax.distributed.initialize after it).
"""
import json
import os
import subprocess
import sys

import numpy as np

from configs import common
from sdft_jax.runtime.cache import cache_root


def get_config(arg=None):
    args = common.parse_arg(arg, seed=0, task="", method="", teacher="")
    seed = args.seed
    c = common.base_config()
    common.apply_task_and_method(c, args)
    c.steps = 6
    c.seed = seed
    c.model.path, c.data.path = materialize(seed)
    if args.teacher == "external":  # a wider, deeper random Qwen2 with the same tokenizer teaches
        c.teacher.kind, c.teacher.path = "external", materialize_teacher(seed)
    elif args.teacher:
        raise ValueError(f"teacher={args.teacher!r}; expected external (or nothing: the EMA self-teacher)")
    c.model.dtype = "float32"
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


def materialize(seed: int = 0) -> tuple[str, str]:
    """(model folder, toy data file) for `seed`, built once."""
    root = os.path.join(cache_root(), "tiny", f"seed{seed}")
    model = os.path.join(root, "model")
    if not os.path.isfile(os.path.join(model, "config.json")):
        code = ("import sys; from sdft_jax.model.random_checkpoint import build_random_checkpoint; "
                "build_random_checkpoint(sys.argv[1], seed=int(sys.argv[2]))")
        env = {**os.environ, "JAX_PLATFORMS": "cpu"}
        env.pop("XLA_FLAGS", None)
        subprocess.run([sys.executable, "-c", code, model, str(seed)], check=True, env=env)
    return model, toy_demonstrations(os.path.join(root, "toy_train.jsonl"), seed=seed)


def materialize_teacher(seed: int = 0) -> str:
    """A random Qwen2 twice as wide and deeper than the tiny student, with the same byte tokenizer:
    the external teacher of `teacher=external` (on-policy distillation from another checkpoint)."""
    path = os.path.join(cache_root(), "tiny", f"seed{seed}", "teacher_wide")
    if not os.path.isfile(os.path.join(path, "config.json")):
        code = ("import sys; from sdft_jax.model.random_checkpoint import build_random_checkpoint; "
                "build_random_checkpoint(sys.argv[1], seed=int(sys.argv[2]), hidden=128, layers=3, intermediate=256)")
        env = {**os.environ, "JAX_PLATFORMS": "cpu"}
        env.pop("XLA_FLAGS", None)
        subprocess.run([sys.executable, "-c", code, path, str(seed + 1000)], check=True, env=env)
    return path


def toy_demonstrations(path: str, n: int = 64, seed: int = 0) -> str:
    """Short string-manipulation tasks with worked answers (generic demonstrations format)."""
    if os.path.isfile(path):
        return path
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    rng = np.random.default_rng(seed)
    letters = "abcdefghij"
    tmp = f"{path}.partial-{os.getpid()}"
    with open(tmp, "w") as f:
        for i in range(n):
            word = "".join(rng.choice(list(letters), size=int(rng.integers(3, 7))))
            kind = i % 3
            if kind == 0:
                prompt, answer = f"Reverse the word {word}.", word[::-1]
            elif kind == 1:
                prompt, answer = f"Uppercase the word {word}.", word.upper()
            else:
                prompt, answer = f"Repeat the word {word} twice.", f"{word} {word}"
            f.write(json.dumps({"prompt": prompt, "demonstration": f"The answer is {answer}.",
                                "answer": answer}) + "\n")
    os.replace(tmp, path)
    return path
