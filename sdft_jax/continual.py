"""Sequential multi-task training (the paper's continual experiment) with a forgetting matrix.

config.stages: ordered list of {task, path, steps[, name, split, eval_path, eval_split, scorer]}. One model
is trained through the stages (each stage starts from the previous stage's export, with a fresh
optimizer and teacher, as separate runs do); after each stage EVERY task of the sequence (and the
configured prior suites: `eval.prior_tasks`, generation tasks {name, task, path[, split, scorer]},
and `eval.prior_mc_files`, multiple-choice files) is evaluated. A finished stage is never re-run,
so the whole sequence resumes where it stopped. Outputs in WORKDIR: results.json, matrix.csv,
continual.png, and one sub-workdir per stage.
"""
from __future__ import annotations

import copy
import csv
import json
import os

import jax
import ml_collections

from sdft_jax.data import prepare
from sdft_jax.eval.continual_metrics import continual_metrics, plot
from sdft_jax.eval.generation import evaluate
from sdft_jax.eval.likelihood import LikelihoodScorer, read_mc_jsonl
from sdft_jax.model import load_pretrained
from sdft_jax.train import _say, run


def _scorer_task(stage) -> str:
    return stage.get("scorer") or ("exact_match" if stage.task == "demonstrations" else stage.task)


def _stage_data_path(stage, workdir: str) -> str:
    if stage.path == "tiny":
        from sdft_jax.tiny import toy_demonstrations
        return toy_demonstrations(os.path.join(workdir, "tiny_data", "toy_train.jsonl"))
    return stage.path


def stage_workdir(workdir: str, index: int, stage) -> str:
    """Where stage `index` trains; its student is exported to <this>/export."""
    return os.path.join(workdir, f"stage{index}_{stage.task}")


def eval_rows(task: str, path: str, split: str | None, fallback: str, data_dir: str, limit: int) -> list:
    """The first `limit` rows (by id) of the split to evaluate on: `split`, else test, else `fallback`."""
    source = prepare(task, path, data_dir)
    split = split or ("test" if "test" in source else fallback)
    if split not in source:
        raise ValueError(f"{path}: no split {split!r} to evaluate on (found {sorted(source)})")
    rows = sorted((source[split][i] for i in range(len(source[split]))), key=lambda e: e["id"])
    return rows[:limit]


def _eval_sets(config, workdir: str) -> list[tuple[str, str, list]]:
    """[(column name, scorer, rows)]: every stage's task, then the prior generation tasks."""
    sets = []
    for stage in config.stages:
        path = stage.get("eval_path") or _stage_data_path(stage, workdir)
        rows = eval_rows(stage.task, path, stage.get("eval_split"), stage.get("split", "train"),
                         os.path.join(workdir, "tfds"), config.eval.examples)
        name = stage.get("name") or stage.task
        name = name if all(name != n for n, _, _ in sets) else f"{name}#{len(sets)}"
        sets.append((name, _scorer_task(stage), rows))
    for prior in config.eval.get("prior_tasks", []) or []:
        rows = eval_rows(prior.task, prior.path, prior.get("split"), "train", os.path.join(workdir, "tfds"),
                         config.eval.examples)
        sets.append((f"prior:{prior.name}", _scorer_task(prior), rows))
    return sets


def _evaluate_all(model, params, eval_sets, config) -> dict[str, float]:
    out = {}
    for name, scorer, rows in eval_sets:
        out[name] = evaluate(model, rows, scorer, params=params, max_new_tokens=config.sampling.max_new_tokens,
                             max_prompt=config.data.max_student_prompt,
                             batch_size=config.eval.get("batch_size", 8))["accuracy"]
    for path in config.eval.get("prior_mc_files", []) or []:
        scorer = LikelihoodScorer(model if params is None else _with_params(model, params), batch_size=8)
        out[f"prior:{os.path.basename(path)}"] = scorer.multiple_choice(read_mc_jsonl(path))["acc_norm"]
    return out


def _with_params(model, params):
    m = copy.copy(model)
    m.params = params
    return m


def run_continual(config: ml_collections.ConfigDict, workdir: str) -> dict:
    os.makedirs(workdir, exist_ok=True)
    if not config.get("stages"):
        raise ValueError("stages: a continual run needs at least one stage")
    base_path = config.model.path
    if base_path == "tiny":
        from sdft_jax.tiny import build_tiny_model
        base_path = build_tiny_model(os.path.join(workdir, "base_model"), seed=config.seed)
    eval_sets = _eval_sets(config, workdir)
    names = [n for n, _, _ in eval_sets][: len(config.stages)]
    results_path = os.path.join(workdir, "results.json")
    results = json.load(open(results_path)) if os.path.isfile(results_path) else {"rows": [], "stages": []}

    def evaluators_for(model, mesh):
        return [lambda params: {f"eval/{k}": v for k, v in _evaluate_all(model, params, eval_sets, config).items()}]

    if "base" not in results:
        model = load_pretrained(base_path, dtype=config.model.dtype)
        results["base"] = _evaluate_all(model, None, eval_sets, config)
        _say(f"base model accuracies: {results['base']}")
        json.dump(results, open(results_path, "w"), indent=2)
    previous = base_path
    for i, stage in enumerate(config.stages):
        stage_dir = stage_workdir(workdir, i, stage)
        if i < len(results["rows"]):
            previous = os.path.join(stage_dir, "export")
            continue
        cfg = ml_collections.ConfigDict(config.to_dict())
        del cfg["stages"]
        cfg.model.path = previous
        cfg.data.task, cfg.data.path = stage.task, _stage_data_path(stage, workdir)
        cfg.data.split = stage.get("split", "train")
        cfg.steps = stage.steps
        cfg.eval.every = config.eval.every
        _say(f"stage {i + 1}/{len(config.stages)}: {cfg.method} on {names[i]} ({stage.steps} steps) from {previous}")
        out = run(cfg, stage_dir, evaluator_factory=evaluators_for if config.eval.every else None)
        if out.get("preempted"):  # saved mid-stage; the rerun resumes this stage from its checkpoint
            _say(f"stopped during stage {i + 1} (SIGTERM); rerun the same command to resume")
            return {**results, "preempted": True}
        previous = os.path.join(stage_dir, "export")
        model = load_pretrained(previous, dtype=config.model.dtype)
        row = _evaluate_all(model, None, eval_sets, config)
        results["rows"].append(row)
        results["stages"].append(names[i])
        _say(f"after stage {i + 1}: {row}")
        json.dump(results, open(results_path, "w"), indent=2)
    columns = [n for n, _, _ in eval_sets] + [k for k in results["base"] if all(k != n for n, _, _ in eval_sets)]
    R = [[row[k] for k in columns] for row in results["rows"]]
    base = [results["base"][k] for k in columns]
    metrics = continual_metrics([r[: len(names)] for r in R], base[: len(names)])
    results.update(columns=columns, matrix=R, base_row=base, **metrics)
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
    _say(f"continual: average accuracy {metrics['average_accuracy']:.3f}, backward transfer "
         f"{metrics['backward_transfer']:+.3f}, forward transfer {metrics['forward_transfer']:+.3f}")
    return results
