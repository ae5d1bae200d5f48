"""Sequential multi-task training (the paper's continual experiment) with a forgetting matrix.

config.stages: ordered list of {task, path, steps[, name, split, eval_path, eval_split, scorer, also_scorers,
evals]} (`evals`: evaluator specs run inside that stage only, e.g. a KL on its own prompts). One model
is trained through the stages (each stage starts from the previous stage's export, with a fresh
optimizer and teacher, as separate runs do); after each stage EVERY task of the sequence (and the
configured prior suites: `eval.prior_tasks`, generation tasks {name, task, path[, split, scorer,
also_scorers, context]},
`eval.prior_mc_files`, multiple-choice files, and `eval.prior_evals`, any evaluator specs) is evaluated;
`eval.teacher_on_tasks` adds every stage's task with the demonstration in context (`teacher:NAME`:
inside a stage the run's teacher weights, between stages the exported model), `eval.max_new_tokens`
caps the accuracy evaluators' answers (0 = sampling.max_new_tokens) and `eval.count_cut` adds
`NAME/cut`, the answers that reached that cap. A finished stage is never re-run,
so the whole sequence resumes where it stopped. Outputs in WORKDIR: results.json, matrix.csv,
continual.png, and one sub-workdir per stage.
"""
from __future__ import annotations

import csv
import json
import os

import jax
import ml_collections

from sdft_jax.eval.continual_metrics import continual_metrics, plot
from sdft_jax.eval.evaluators import evaluate_model
from sdft_jax.programs.train import run
from sdft_jax.runtime.host import say


def stage_workdir(workdir: str, index: int, stage) -> str:
    """Where stage `index` trains; its student is exported to <this>/export."""
    return os.path.join(workdir, f"stage{index}_{stage.task}")


def _eval_specs(config) -> dict[str, dict]:
    """{column name: evaluator spec}: every stage's task, the prior generation tasks, the prior
    multiple-choice files; run after every stage and, with eval.every, inside each stage."""
    specs, teacher = {}, {}
    accuracy = dict(type="accuracy", batch_size=config.eval.get("batch_size", 8),
                    max_new_tokens=config.eval.get("max_new_tokens", 0), count_cut=config.eval.get("count_cut", False))
    for stage in config.stages:
        name = stage.get("name") or stage.task
        name = name if name not in specs else f"{name}#{len(specs)}"
        specs[name] = dict(accuracy, task=stage.task, scorer=stage.get("scorer") or "",
                           path=stage.get("eval_path") or stage.path,
                           split=stage.get("eval_split") or "", fallback_split=stage.get("split", "train"),
                           also_scorers=tuple(stage.get("also_scorers") or ()))
        if config.eval.get("teacher_on_tasks"):
            teacher[f"teacher:{name}"] = dict(specs[name], context="teacher")
    specs.update(teacher)
    for prior in config.eval.get("prior_tasks", []) or []:
        specs[f"prior:{prior.name}"] = dict(accuracy, task=prior.task, path=prior.path,
                                            split=prior.get("split") or "", scorer=prior.get("scorer") or "",
                                            also_scorers=tuple(prior.get("also_scorers") or ()),
                                            context=prior.get("context") or "student")
    for path in config.eval.get("prior_mc_files", []) or []:
        specs[f"prior:{os.path.basename(path)}"] = dict(type="multiple_choice", path=path)
    for name, spec in (config.eval.get("prior_evals") or {}).items():  # any evaluator spec (e.g. humaneval)
        specs[f"prior:{name}"] = dict(spec)
    return specs


def run_continual(config: ml_collections.ConfigDict, workdir: str) -> dict:
    os.makedirs(workdir, exist_ok=True)
    if not config.get("stages"):
        raise ValueError("stages: a continual run needs at least one stage")
    base_path = config.model.path
    specs = _eval_specs(config)
    names = list(specs)[: len(config.stages)]
    results_path = os.path.join(workdir, "results.json")
    results = json.load(open(results_path)) if os.path.isfile(results_path) else {"rows": [], "stages": []}

    if "base" not in results:
        results["base"] = evaluate_model(base_path, specs, config, workdir)
        say(f"base model accuracies: {results['base']}")
        json.dump(results, open(results_path, "w"), indent=2)
    previous = base_path
    for i, stage in enumerate(config.stages):
        stage_dir = stage_workdir(workdir, i, stage)
        if i < len(results["rows"]):
            previous = os.path.join(stage_dir, "export")
            continue
        cfg = ml_collections.ConfigDict(config.to_dict())
        del cfg["stages"]
        cfg.program = "train"
        cfg.model.path = previous
        if config.teacher.get("anchor", "stage") == "base":  # every stage's teacher starts from the base
            cfg.teacher.init_path = base_path
        cfg.data.task, cfg.data.path = stage.task, stage.path
        cfg.data.split = stage.get("split", "train")
        cfg.steps = stage.steps
        cfg.eval.every = config.eval.every
        # Inside the stage: the same evaluations as between stages, and the stage's own.
        cfg.evals = ml_collections.ConfigDict({**specs, **(stage.get("evals") or {})})
        say(f"stage {i + 1}/{len(config.stages)}: {cfg.method} on {names[i]} ({stage.steps} steps) from {previous}; "
            f"teacher {cfg.teacher.kind} from "
            + ("the base" if cfg.teacher.init_path else "this stage's initial model"))
        out = run(cfg, stage_dir)
        if out.get("preempted"):  # saved mid-stage; the rerun resumes this stage from its checkpoint
            say(f"stopped during stage {i + 1} ({out.get('signal', 'SIGTERM')}); rerun the same command to resume")
            return {**results, "preempted": True}
        previous = os.path.join(stage_dir, "export")
        row = evaluate_model(previous, specs, config, workdir)
        results["rows"].append(row)
        results["stages"].append(names[i])
        say(f"after stage {i + 1}: {row}")
        json.dump(results, open(results_path, "w"), indent=2)
    columns = list(specs) + [k for k in results["base"] if k not in specs]
    R = [[row[k] for k in columns] for row in results["rows"]]
    base = [results["base"][k] for k in columns]
    metrics = continual_metrics([r[: len(names)] for r in R], base[: len(names)])
    results.update(columns=columns, matrix=R, base_row=base, teacher_anchor=config.teacher.get("anchor", "stage"),
                   **metrics)
    json.dump(results, open(results_path, "w"), indent=2)
    with open(os.path.join(workdir, "matrix.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["after_stage"] + columns)
        w.writerow(["base"] + base)
        for stage, row in zip(results["stages"], R):
            w.writerow([stage] + row)
    if jax.process_index() == 0:
        plot([r[: len(names)] for r in R], base[: len(names)], names, results["stages"],
             os.path.join(workdir, "continual.png"), title=f"{config.method}: accuracy after each stage")
    say(f"continual: average accuracy {metrics['average_accuracy']:.3f}, backward transfer "
         f"{metrics['backward_transfer']:+.3f}, forward transfer {metrics['forward_transfer']:+.3f}")
    return results
