"""Evaluators declared in the config, as big_vision does:

    config.evals.NAME = dict(type="heldout_nll" | "accuracy" | "multiple_choice", every=0, ...)

`from_config(config, ctx)` builds them once the model is loaded; each is called as
`ev(params, teacher_params) -> {NAME: value}` every `every` steps (0 = `eval.every`, -1 = once, at the
last step) and the loop logs
`eval/NAME`. Unknown types and arguments name the key. Types:
  heldout_nll      split, examples, context (student | teacher)        sdft_jax/eval/heldout_nll.py
  accuracy         task, path, split, scorer, examples, context, max_new_tokens, batch_size:
                   greedy generation with our sampler, scored by `score_completion`; context="teacher"
                   puts the demonstration in context (the teacher ceiling) and uses the teacher weights
  multiple_choice  path (JSONL of {query, choices, gold}), metric (acc | acc_norm)
  kl_to_base       split, examples, max_new_tokens, batch_size, seed: KL(current || the run's initial
                   weights) on the prompts, over the current model's samples   sdft_jax/eval/kl_to_base.py
"""
from __future__ import annotations

import copy
import inspect
import os

from sdft_jax.data import prepare
from sdft_jax.eval import humaneval
from sdft_jax.eval.base_drift import BaseAnswerNLL
from sdft_jax.eval.context import EvalContext, EvalDefaults
from sdft_jax.eval.generation import evaluate
from sdft_jax.eval.heldout_nll import HeldoutNLL
from sdft_jax.eval.kl_to_base import KLToBase
from sdft_jax.eval.likelihood import LikelihoodScorer, read_mc_jsonl
from sdft_jax.model import load_pretrained


def eval_rows(task: str, path: str, split: str | None, fallback: str, data_dir: str, limit: int) -> list:
    """The first `limit` rows (by id) of the split to evaluate on: `split`, else test, else `fallback`."""
    source = prepare(task, path, data_dir)
    split = split or ("test" if "test" in source else fallback)
    if split not in source:
        raise ValueError(f"{path}: no split {split!r} to evaluate on (found {sorted(source)})")
    rows = sorted((source[split][i] for i in range(len(source[split]))), key=lambda e: e["id"])
    return rows[:limit]


def _records_path(ctx: EvalContext, name: str) -> str | None:
    if not ctx.records_dir:
        return None
    os.makedirs(ctx.records_dir, exist_ok=True)
    return os.path.join(ctx.records_dir, f"{name}.jsonl")


def _with_params(model, params):
    m = copy.copy(model)
    m.params = params
    return m


class TaskAccuracy:
    def __init__(self, name: str, ctx: EvalContext, *, task: str = "", path: str = "", split: str = "",
                 fallback_split: str = "train", scorer: str = "", examples: int = 0, context: str = "student",
                 max_new_tokens: int = 0, batch_size: int = 8, every: int = 0, also_scorers: tuple = (),
                 count_cut: bool = False):
        c = ctx.defaults
        task, path = task or c.task, path or c.path
        self.name, self.every, self.context, self.model = name, every, context, ctx.model
        self.records = _records_path(ctx, name)
        self.count_cut = count_cut
        self.scorer = scorer or ("exact_match" if task == "demonstrations" else task)  # the task's own scorer
        self.rows = eval_rows(task, path, split or None, fallback_split, ctx.data_dir, examples or c.examples)
        self.kwargs = dict(with_demonstration=context == "teacher", template=c.teacher_template,
                           max_new_tokens=max_new_tokens or c.max_new_tokens,
                           max_prompt=c.max_teacher_prompt if context == "teacher" else c.max_student_prompt,
                           batch_size=batch_size, also_scorers=tuple(also_scorers))

    def __call__(self, params, teacher_params=None) -> dict:
        """{NAME: accuracy}, per extra scorer S on the same completions {NAME/S: accuracy}, and with
        count_cut {NAME/cut: the answers that reached max_new_tokens before their end}."""
        weights = teacher_params if self.context == "teacher" and teacher_params is not None else params
        m = evaluate(self.model, self.rows, self.scorer, params=weights, out_jsonl=self.records, **self.kwargs)
        out = {self.name: m["accuracy"], **{f"{self.name}/{a}": m[f"accuracy:{a}"] for a in self.kwargs["also_scorers"]}}
        return {**out, f"{self.name}/cut": m["cut"]} if self.count_cut else out


class HumanEvalPass1:
    """pass@1 over the first `examples` problems (0 = eval.examples), greedy."""

    def __init__(self, name: str, ctx, *, examples: int = 0, max_new_tokens: int = 384, batch_size: int = 8,
                 every: int = 0):
        self.name, self.every, self.model = name, every, ctx.model
        self.records = _records_path(ctx, name)
        self.rows = humaneval.rows(examples or ctx.defaults.examples)
        self.kwargs = dict(max_new_tokens=max_new_tokens, max_prompt=1024, batch_size=batch_size)

    def __call__(self, params, teacher_params=None) -> dict:
        return {self.name: evaluate(self.model, self.rows, "humaneval", params=params, out_jsonl=self.records,
                                    **self.kwargs)["accuracy"]}


class MultipleChoice:
    def __init__(self, name: str, ctx: EvalContext, *, path: str, metric: str = "acc_norm", batch_size: int = 8,
                 every: int = 0):
        self.name, self.every, self.metric, self.model = name, every, metric, ctx.model
        self.rows, self.batch_size = read_mc_jsonl(path), batch_size

    def __call__(self, params, teacher_params=None) -> dict:
        model = self.model if params is None else _with_params(self.model, params)
        scorer = LikelihoodScorer(model, batch_size=self.batch_size)
        return {self.name: scorer.multiple_choice(self.rows)[self.metric]}


TYPES = {"heldout_nll": HeldoutNLL, "accuracy": TaskAccuracy, "multiple_choice": MultipleChoice,
         "kl_to_base": KLToBase, "humaneval": HumanEvalPass1, "base_answer_nll": BaseAnswerNLL}


def check_spec(name: str, spec) -> None:
    """Config errors before anything loads: the type and every argument must exist."""
    kind = spec.get("type")
    if kind not in TYPES:
        raise ValueError(f"evals.{name}.type={kind!r}; expected one of {sorted(TYPES)}")
    allowed = set(inspect.signature(TYPES[kind]).parameters) - {"name", "ctx"}
    unknown = sorted(set(spec) - allowed - {"type"})
    if unknown:
        raise ValueError(f"evals.{name}: unknown argument(s) {unknown} for type {kind!r}; expected {sorted(allowed)}")
    if spec.get("context", "student") not in ("student", "teacher"):
        raise ValueError(f"evals.{name}.context={spec['context']!r}; expected 'student' or 'teacher'")


def build(name: str, spec, ctx: EvalContext):
    spec = dict(spec)
    check_spec(name, spec)
    kind = spec.pop("type")
    ev = TYPES[kind](name, ctx, **spec)
    ev.every = ev.every or ctx.defaults.every
    return ev


def from_config(config, ctx: EvalContext) -> list:
    """The run's evaluators from `config.evals`. A held-out NLL with no split to read (no `split` and
    no `data.eval_split`) is off, as is every evaluator with neither `every` nor `eval.every`."""
    out = []
    for name, spec in (config.get("evals") or {}).items():
        check_spec(name, spec)
        if not (spec.get("every") or ctx.defaults.every):
            continue
        if spec["type"] == "heldout_nll" and not (spec.get("split") or ctx.defaults.eval_split):
            continue
        out.append(build(name, spec, ctx))
    return out


def evaluate_all(evaluators, params=None, teacher_params=None) -> dict:
    out = {}
    for ev in evaluators:
        out.update(ev(params, teacher_params))
    return out


def evaluate_model(path: str, specs: dict, config, workdir: str, records_dir: str = "") -> dict[str, float]:
    """The checkpoint folder at `path` scored by the evaluators `specs` declares ({name: spec}); with
    `records_dir`, each generation evaluator's per-question records (completion, scores) go to NAME.jsonl there."""
    defaults = EvalDefaults.of(config)
    model = load_pretrained(path, dtype=defaults.model_dtype)
    ctx = EvalContext(defaults, model, data_dir=os.path.join(workdir, "tfds"), records_dir=records_dir)
    return evaluate_all([build(name, spec, ctx) for name, spec in specs.items()])
