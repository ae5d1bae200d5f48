"""The built-in demo: pretrain (or load) the base, measure the teacher ceiling, run the continual
experiment with SDFT and with SFT from the same base on the same data, write the report.

Outputs in WORKDIR: results.json (every accuracy; no timings, so a rerun with the same seed gives
the same file), report.md, demo.png (both methods side by side), sdft/ and sft/ (the continual
runs: their own results.json, matrix.csv, continual.png and one folder per stage), world/ (the
generated task files), timing.json.
"""
from __future__ import annotations

import json
import os
import time

import jax
import ml_collections
import numpy as np

from sdft_jax.data.pipeline import Lengths
from sdft_jax.eval.context import EvalContext
from sdft_jax.eval.evaluators import eval_rows
from sdft_jax.eval.generation import evaluate
from sdft_jax.eval.kl_to_base import KLToBase
from sdft_jax.experiments.demo import world
from sdft_jax.experiments.demo.headline import headline
from sdft_jax.experiments.demo.pretrain import pretrained_base
from sdft_jax.experiments.demo.report import write_plot, write_report
from sdft_jax.model import load_pretrained
from sdft_jax.programs.continual import run_continual, stage_workdir
from sdft_jax.resolve import ConfigError, resolve
from sdft_jax.runtime.metrics_log import read_rows



def arm_settings(arm: str) -> tuple[str, str, str]:
    """A demo arm (an entry of demo.methods) -> (method, teacher anchor, demonstration form):
    `sdft`, `sft`, `offline`, `rejection`; `METHOD:base` for a teacher anchored to the base across
    stages; `METHOD@plain` for demonstrations in the base's own form (style world)."""
    arm, _, form = arm.partition("@")
    method, _, anchor = arm.partition(":")
    return method, anchor or "stage", form or "expert"


def arm_folder(arm: str) -> str:
    return arm.replace(":", "_").replace("@", "_")


def _say(msg: str) -> None:
    print(f"[demo] {msg}", flush=True)


def _check_workdir(config, workdir: str) -> None:
    """A rerun into the same workdir resumes; a different config there would mix two experiments."""
    path = os.path.join(workdir, "demo_config.json")
    text = config.to_json_best_effort(indent=2, sort_keys=True)
    if os.path.isfile(path) and open(path).read() != text:
        raise ValueError(f"{workdir} holds a demo run with another config ({path}); pass a new --workdir "
                         "or delete that folder")
    os.makedirs(workdir, exist_ok=True)
    with open(path, "w") as f:
        f.write(text)


def continual_config(config, arm: str, tasks: list[tuple[world.Rule, str]], prior_root: str, base_path: str = ""):
    """The continual runner's config for one arm: same base, data, steps and optimizer. With
    demo.curve_every, every task, prior skill and the teacher on every task are evaluated inside
    the stages too, and KL(model || base) on the stage's own prompts (the per-step curves)."""
    method, anchor, form = arm_settings(arm)
    c = ml_collections.ConfigDict(config.demo.run.to_dict())  # a deep copy
    c.program = "continual"
    c.method, c.seed, c.steps = method, config.seed, 1
    c.teacher.anchor = anchor
    c.batch.prompts_per_step = config.demo.prompts_per_step
    c.optim.lr, c.optim.warmup_steps = config.demo.lr, config.demo.warmup_steps
    c.teacher.kind, c.teacher.ema_alpha = config.demo.teacher, config.demo.ema_alpha
    c.loss.skip_first_tokens = config.demo.skip_first_tokens
    c.checkpoint.every = 10**6
    c.eval.examples, c.eval.batch_size = config.demo.eval_examples, 32
    c.eval.max_new_tokens, c.eval.count_cut = world.EVAL_MAX_NEW_TOKENS, True
    curves = config.demo.get("curve_every", 0)
    c.eval.every, c.eval.teacher_on_tasks = curves, bool(curves)
    scorer = world.scorer(config.demo.world)
    c.data.scorer = scorer  # method=rejection accepts what the world's scorer marks right

    def stage(rule, folder):
        kl = dict(kl=dict(type="kl_to_base", split="test", examples=config.demo.eval_examples, batch_size=32,
                          max_new_tokens=world.MAX_RESPONSE_TOKENS, seed=config.seed, base_path=base_path))
        return ml_collections.ConfigDict(dict(
            task="demonstrations", name=rule.name, path=world.plain_form_folder(folder) if form == "plain" else folder,
            eval_path=folder, steps=config.demo.steps_per_task, scorer=scorer, evals=kl if curves else {}))
    c.stages = [stage(rule, folder) for rule, folder in tasks]
    c.eval.prior_tasks = [ml_collections.ConfigDict(dict(name=skill, task="demonstrations",
                                                         path=os.path.join(prior_root, f"prior_{skill}"),
                                                         scorer=scorer))
                          for skill in sorted(world.PRIOR_SKILLS)]
    return c


def _test_rows(folder: str, data_dir: str, limit: int) -> list:
    return eval_rows("demonstrations", folder, "test", "test", data_dir, limit)


def _accuracy(model, rows, with_demonstration: bool, scorer: str) -> float:
    return evaluate(model, rows, scorer, with_demonstration=with_demonstration,
                    template=world.TEACHER_TEMPLATE, max_new_tokens=world.EVAL_MAX_NEW_TOKENS, max_prompt=64,
                    batch_size=32)["accuracy"]


def teacher_ceiling(base_path: str, tasks, prior_root: str, config, data_dir: str) -> dict:
    """Base model accuracy on each new task with the student context and with the teacher context
    (demonstration in context), and on each prior skill."""
    model = load_pretrained(base_path, dtype="float32")
    n, scorer = config.demo.eval_examples, world.scorer(config.demo.world)
    out = {"student": {}, "teacher": {}, "prior": {}}
    for rule, folder in tasks:
        rows = _test_rows(folder, data_dir, n)
        out["student"][rule.name] = _accuracy(model, rows, False, scorer)
        out["teacher"][rule.name] = _accuracy(model, rows, True, scorer)
    for skill in sorted(world.PRIOR_SKILLS):
        out["prior"][skill] = _accuracy(model, _test_rows(os.path.join(prior_root, f"prior_{skill}"), data_dir, n),
                                        False, scorer)
    return out


def teacher_after_stages(method_dir: str, stages, tasks, config, data_dir: str) -> list[dict]:
    """The teacher's accuracy (demonstration in context) of every stage's exported model: SDFT's
    signal on the next task depends on the in-context skill surviving the previous stages."""
    rows = {rule.name: _test_rows(folder, data_dir, config.demo.eval_examples) for rule, folder in tasks}
    out = []
    for i, stage in enumerate(stages):
        model = load_pretrained(os.path.join(stage_workdir(method_dir, i, stage), "export"), dtype="float32")
        out.append({name: _accuracy(model, r, True, world.scorer(config.demo.world)) for name, r in rows.items()})
    return out


def kl_after_stages(method_dir: str, stages, tasks, base_path: str, config, data_dir: str) -> list[float]:
    """KL(stage i's model || base) on task i's held-out prompts (nats per answer, Monte-Carlo over
    the fine-tuned model's own samples at temperature 1, exact per token): RL's Razor's variable."""
    run = config.demo.run
    lengths = Lengths(run.data.max_student_prompt, run.data.max_teacher_prompt, world.MAX_RESPONSE_TOKENS)
    base = load_pretrained(base_path, dtype="float32")
    out = []
    for i, ((_, folder), stage) in enumerate(zip(tasks, stages)):
        rows = _test_rows(folder, data_dir, config.demo.eval_examples)
        kl = KLToBase("kl", EvalContext(run, base, lengths=lengths, source={"test": rows}), split="test",
                      examples=len(rows), max_new_tokens=world.MAX_RESPONSE_TOKENS, batch_size=32, seed=config.seed)
        tuned = load_pretrained(os.path.join(stage_workdir(method_dir, i, stage), "export"), dtype="float32")
        out.append(kl(tuned.params)["kl"])
    return out


def curves(method_dir: str, stages, raw: dict) -> list[list[dict]]:
    """Per stage, its evaluations in order of steps: step 0 = the model the stage started from (the
    base's or the previous stage's between-stage row: `teacher:` = that model with the demonstration),
    then every demo.curve_every steps from the stage's metrics.jsonl (`teacher:` = the run's teacher
    weights with the demonstration; `kl` = KL(model || base) on the stage's own prompts)."""
    start = [raw["base_row"]] + raw["matrix"][:-1]
    out = []
    for i, stage in enumerate(stages):
        first = {"step": 0, **dict(zip(raw["columns"], start[i]))}
        rows = [{"step": r["step"], **{k[len("eval/"):]: v for k, v in r.items() if k.startswith("eval/")}}
                for r in read_rows(stage_workdir(method_dir, i, stage))]
        out.append([first] + [r for r in rows if len(r) > 1])
    return out


def summarize(method_results: dict, task_names: list[str], skills: list[str]) -> dict:
    """Per stage: mean accuracy on the tasks trained so far, on all new tasks, on the prior skills;
    forgetting = accuracy drop on a task from right after its stage to the end (mean over tasks
    1..T-1) and prior-skill drop from the base."""
    cols = method_results["columns"]
    R = np.asarray(method_results["matrix"], np.float64)
    base = np.asarray(method_results["base_row"], np.float64)
    new = [cols.index(n) for n in task_names]
    prior = [cols.index(f"prior:{s}") for s in skills]
    stages = []
    for i in range(len(task_names)):
        stages.append({"stage": i + 1, "task": task_names[i],
                       "seen_tasks_accuracy": float(R[i, new[: i + 1]].mean()),
                       "all_new_tasks_accuracy": float(R[i, new].mean()),
                       "prior_accuracy": float(R[i, prior].mean())})
    T = len(task_names)
    return {"stages": stages,
            "final_new_tasks_accuracy": float(R[-1, new].mean()),
            "final_prior_accuracy": float(R[-1, prior].mean()),
            "base_prior_accuracy": float(base[prior].mean()),
            "prior_forgetting": float(base[prior].mean() - R[-1, prior].mean()),
            "new_task_forgetting": float(np.mean([R[j, new[j]] - R[-1, new[j]] for j in range(T - 1)]))
            if T > 1 else 0.0,
            "average_accuracy": method_results["average_accuracy"],
            "backward_transfer": method_results["backward_transfer"]}


def validate(config) -> None:
    """Every demo setting is checked before the (10-minute) pretraining starts."""
    d = config.demo
    if d.world not in world.WORLDS:
        raise ConfigError(f"demo.world={d.world!r}; expected one of {', '.join(world.WORLDS)}")
    for key in ("num_tasks", "steps_per_task", "eval_examples", "prompts_per_step"):
        if d[key] < 1:
            raise ConfigError(f"demo.{key}: must be >= 1, got {d[key]}")
    if d.train_rows < d.prompts_per_step:
        raise ConfigError(f"demo.train_rows: {d.train_rows} rows cannot fill a batch of demo.prompts_per_step="
                          f"{d.prompts_per_step}")
    if d.get("curve_every", 0) < 0:
        raise ConfigError(f"demo.curve_every: must be >= 0 (0 = no curves), got {d.curve_every}")
    for method in config.demo.get("methods", ("sdft", "sft")):
        _, anchor, form = arm_settings(method)
        if form not in ("expert", "plain") or anchor not in ("stage", "base"):
            raise ConfigError(f"demo.methods: {method!r}; an arm is METHOD[:base][@plain]")
        if form == "plain" and d.world != "style":
            raise ConfigError(f"demo.methods: {method!r}: plain-form demonstrations exist in the style world only "
                              f"(demo.world={d.world!r}: its demonstrations are already the base's form)")
        c = continual_config(config, method, [], "")
        del c["stages"]
        # The base is not built yet: any folder lets resolve() check every other setting.
        c.model.path, c.data.path, c.steps = os.path.dirname(os.path.abspath(__file__)), "generated", d.steps_per_task
        try:
            resolve(c, jax.device_count(), jax.process_count())
        except ConfigError as e:
            raise ConfigError(f"demo ({method} stage settings): {e}") from None


def run_demo(config: ml_collections.ConfigDict, workdir: str) -> dict:
    t_start = time.perf_counter()
    validate(config)
    _check_workdir(config, workdir)
    timing = {}
    steps = 2 + len(config.demo.get("methods", ("sdft", "sft")))
    _say(f"1/{steps} base model (pretraining settings {config.demo.pretrain.to_dict()})")
    t = time.perf_counter()
    base_path = pretrained_base(config.demo.pretrain, config.demo.run, config.demo.world, say=_say)
    timing["base_model_s"] = time.perf_counter() - t

    world_dir = os.path.join(workdir, "world")
    tasks = world.write_task_folders(world_dir, config.seed, config.demo.num_tasks, config.demo.train_rows,
                                     config.demo.eval_examples, config.demo.world)
    task_names = [rule.name for rule, _ in tasks]
    skills = sorted(world.PRIOR_SKILLS)
    _say(f"2/{steps} teacher ceiling of the base on new tasks {task_names} (hidden rules "
         f"{ {r.name: r.table for r, _ in tasks} })")
    t = time.perf_counter()
    ceiling = teacher_ceiling(base_path, tasks, world_dir, config, os.path.join(workdir, "tfds"))
    timing["teacher_ceiling_s"] = time.perf_counter() - t
    _say(f"   student {ceiling['student']} | teacher {ceiling['teacher']} | prior skills {ceiling['prior']}")

    results = {"seed": config.seed, "world": config.demo.world, "lr": config.demo.lr,
               "base_model": os.path.basename(base_path), "pretrain_seed": config.demo.pretrain.seed,
               "eval_max_new_tokens": world.EVAL_MAX_NEW_TOKENS,
               "longest_correct_tokens": world.longest_correct_tokens(),
               "rules": {r.name: r.table for r, _ in tasks}, "teacher_ceiling": ceiling, "methods": {}}
    arms = tuple(config.demo.get("methods", ("sdft", "sft")))
    for k, method in enumerate(arms):
        _say(f"{3 + k}/{2 + len(arms)} continual {method.upper()} over {len(tasks)} tasks x "
             f"{config.demo.steps_per_task} steps")
        t = time.perf_counter()
        cfg = continual_config(config, method, tasks, world_dir, base_path)
        cfg.model.path = base_path
        folder = os.path.join(workdir, arm_folder(method))
        raw = run_continual(cfg, folder)
        if raw.get("preempted"):
            _say("stopped by SIGTERM; rerun the same command to resume (finished stages are kept)")
            return {"preempted": True}
        timing[f"{method}_s"] = time.perf_counter() - t
        results["methods"][method] = {
            "columns": raw["columns"], "base_row": raw["base_row"], "matrix": raw["matrix"],
            "teacher_after_stage": teacher_after_stages(folder, cfg.stages, tasks, config,
                                                        os.path.join(workdir, "tfds")),
            "kl_to_base_after_stage": kl_after_stages(folder, cfg.stages, tasks, base_path,
                                                      config, os.path.join(workdir, "tfds")),
            "curves": curves(folder, cfg.stages, raw) if config.demo.get("curve_every", 0) else [],
            "summary": summarize(raw, task_names, skills)}
    with open(os.path.join(workdir, "results.json"), "w") as f:
        json.dump(results, f, indent=2, sort_keys=True)
    timing["total_s"] = time.perf_counter() - t_start
    with open(os.path.join(workdir, "timing.json"), "w") as f:
        json.dump({k: round(v, 1) for k, v in timing.items()}, f, indent=2)
    # The headline needs the per-step curves (matched new-task accuracy) and a second task (the teacher on it).
    lines = headline(results) if config.demo.get("curve_every", 0) and len(tasks) >= 2 else []
    write_plot(results, task_names, skills, os.path.join(workdir, "demo.png"))
    write_report(results, task_names, skills, timing, config, os.path.join(workdir, "report.md"), lines)
    _say(f"done in {timing['total_s'] / 60:.1f} min: {os.path.join(workdir, 'report.md')}")
    for method in arms:
        s = results["methods"][method]["summary"]
        _say(f"   {method.upper()}: final new-task accuracy {s['final_new_tasks_accuracy']:.3f}, prior skills "
             f"{s['final_prior_accuracy']:.3f} (base {s['base_prior_accuracy']:.3f})")
    for line in lines:
        _say(line)
    return results
