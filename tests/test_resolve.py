"""resolve.py: every config file resolves; bad values and config arguments name the key."""
import glob
import os

import pytest

from configs import common
from sdft_jax.resolve import ConfigError, resolve
from tests.test_train import REPO, _tiny


CONFIG_FILES = sorted(os.path.basename(p) for p in glob.glob(os.path.join(REPO, "configs", "[!_]*.py"))
                      if not p.endswith("common.py"))  # common.py: the helpers, not a run


@pytest.mark.parametrize("name", CONFIG_FILES)
def test_every_config_file_resolves(name, tmp_path, monkeypatch):
    import importlib.util
    spec = importlib.util.spec_from_file_location("cfg", os.path.join(REPO, "configs", name))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    c = mod.get_config()
    if c.get("demo"):  # the demo builds its runs' configs itself; validate() resolves them
        from sdft_jax.experiments.demo.runner import validate
        validate(c)
        assert c.demo.teacher == "ema" and c.demo.ema_alpha == 0.01
        return
    if c.get("stages"):  # continual configs: each stage is resolved as its own run
        c.data.path, c.data.task, c.steps = c.stages[0].path, c.stages[0].task, c.stages[0].steps
    if not os.path.isdir(c.model.path):  # real checkpoints are not here: point at any folder to validate the rest
        c.model.path = str(tmp_path)
    settings = resolve(c, num_devices=1 if name.endswith("_gpu.py") else 4)  # one GPU, or e.g. a TPU v5p-8
    assert settings.step.loss_kind == "forward_kl" and settings.step.teacher_kind == "ema"
    assert c.loss.skip_first_tokens == 3 and c.teacher.ema_alpha == 0.01


@pytest.mark.parametrize("override,message", [
    ({"loss.kind": "kl"}, "loss.kind='kl'"),
    ({"teacher.kind": "average"}, "teacher.kind='average'"),
    ({"batch.prompts_per_step": 6}, "batch.prompts_per_step: micro-batch of 6 prompts is not divisible"),
    ({"mesh.data": 3}, "mesh: 8 devices are not divisible"),
    ({"model.path": "/no/such/model"}, "model.path: '/no/such/model' is not a folder, a hub id"),
    ({"optim.lr": -1.0}, "optim.lr: must be > 0"),
    ({"data.teacher_template": "{x} only"}, "must contain {c}"),
    ({"model.compute_dtype": "fp16"}, "model.compute_dtype: must be '', float32 or bfloat16, got 'fp16'"),
    ({"teacher.ema_dtype": "float64"}, "teacher.ema_dtype: must be '', float32 or bfloat16"),
    ({"data.bucket_growth": 1.0}, "data.bucket_growth: must be in (1, 4], got 1.0"),
    ({"method": "sdft", "loss.kind": "jsd", "loss.beta": 1.5}, "loss.beta: must be in"),
    ({"model.lora.rank": 8, "model.lora.targets": "q,qkv"},
     "model.lora.targets: qkv is not a projection; choose among q,k,v,o,gate,up,down"),
    ({"model.lora.rank": 8, "model.lora.base_dtype": "fp8"}, "model.lora.base_dtype: must be one of"),
    ({"model.lora.rank": -1}, "model.lora.rank: must be >= 0"),
    # Before: loss_tokens 0, gradient 0 on every step, the run ended "done" and exported the base.
    ({"sampling.max_new_tokens": 3}, "loss.skip_first_tokens: 3 >= sampling.max_new_tokens=3: no completion token "
                                     "could carry SDFT loss"),
    ({"log.every": 0}, "log.every: must be >= 1"),  # before: ZeroDivisionError after compiling
])
def test_bad_config_values_name_the_key(override, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace("{", r"\{").replace("}", r"\}")):
        resolve(_tiny(**override), num_devices=8)


def test_config_arg_selects_task_and_method():
    c = common.base_config()
    args = common.parse_arg("task=science,method=sft", task="", method="")
    common.apply_task_and_method(c, args, common.SHARED_TASKS)
    assert (c.data.task, c.method, c.data.path) == ("science", "sft", common.SHARED_TASKS["science"])
    with pytest.raises(ValueError, match="unknown config argument 'foo'; known: method, task"):
        common.parse_arg("foo=1", task="", method="")
    assert common.parse_arg("seed=3", seed=0).seed == 3  # typed like its default
    with pytest.raises(ValueError, match="seed='x' must be of type int"):
        common.parse_arg("seed=x", seed=0)


def test_paper_code_teacher_template_is_the_released_trainers_string():
    from sdft_jax.data import prompts
    from sdft_jax.model.byte_tokenizer import byte_tokenizer
    resolve(_tiny(**{"data.teacher_template": "paper_code"}), num_devices=8)
    row = {"prompt": "Q?", "demonstration": "A."}
    text = prompts.teacher_messages(row, "paper_code")[0]["content"]
    assert text == ("\nQ?\n\nThis is an example for a response to the question:\nA.\n\n"
                    "Now answer with a response of your own, including the thinking process.\n")
    assert prompts.teacher_context(byte_tokenizer(), row, "paper_code") != prompts.teacher_context(byte_tokenizer(), row)
