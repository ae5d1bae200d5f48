"""What an evaluator is built from: the run's model, mesh, lengths and prepared data, and the run's
settings an evaluator falls back on when its spec leaves a field out (not the whole config)."""
from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class EvalDefaults:
    task: str  # data.task
    path: str  # data.path
    split: str  # data.split (the training split)
    eval_split: str  # data.eval_split ("" = none)
    teacher_template: str
    max_student_prompt: int
    max_teacher_prompt: int
    bucket_growth: float
    max_new_tokens: int  # sampling.max_new_tokens
    examples: int  # eval.examples
    every: int  # eval.every
    model_dtype: str  # model.dtype: how a checkpoint is loaded to be evaluated

    @classmethod
    def of(cls, config) -> "EvalDefaults":
        d = config.data
        return cls(task=d.task, path=d.path, split=d.split, eval_split=d.eval_split,
                   teacher_template=d.teacher_template,
                   max_student_prompt=d.max_student_prompt, max_teacher_prompt=d.max_teacher_prompt,
                   bucket_growth=d.bucket_growth, max_new_tokens=config.sampling.max_new_tokens,
                   examples=config.eval.examples, every=config.eval.every, model_dtype=config.model.dtype)


@dataclasses.dataclass
class EvalContext:
    """What evaluators may read. `defaults` may be given as the run's config (it is reduced to EvalDefaults)."""
    defaults: EvalDefaults
    model: object
    mesh: object = None
    lengths: object = None
    source: dict = dataclasses.field(default_factory=dict)
    data_dir: str = ""
    records_dir: str = ""  # generation evaluators write their per-question records here as NAME.jsonl

    def __post_init__(self):
        if not isinstance(self.defaults, EvalDefaults):
            self.defaults = EvalDefaults.of(self.defaults)
