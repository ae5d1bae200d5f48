"""report.md and demo.png from the demo's results."""
from __future__ import annotations

import numpy as np

from matplotlib.figure import Figure  # no pyplot: no global backend, no open figures
from sdft_jax.experiments.demo import world



def write_plot(results: dict, task_names: list[str], skills: list[str], path: str) -> None:
    """Left: mean accuracy on the new tasks trained so far; right: prior-skill accuracy; x = stage."""
    ceiling = results["teacher_ceiling"]
    fig = Figure(figsize=(11, 4))
    axes = fig.subplots(1, 2)
    xs = np.arange(len(task_names) + 1)
    for method, style in zip(results["methods"], ("-o", "--s", "-.^", ":D", "-v", "--x")):
        s = results["methods"][method]["summary"]
        seen = [ceiling["student"][task_names[0]]] + [st["seen_tasks_accuracy"] for st in s["stages"]]
        prior = [s["base_prior_accuracy"]] + [st["prior_accuracy"] for st in s["stages"]]
        axes[0].plot(xs, seen, style, label=method.upper())
        axes[1].plot(xs, prior, style, label=method.upper())
    teacher = float(np.mean([ceiling["teacher"][n] for n in task_names]))
    axes[0].axhline(teacher, color="gray", ls=":", label="teacher ceiling (base + demo)")
    labels = ["base"] + [f"after {n}" for n in task_names]
    for ax, title in zip(axes, ("new tasks trained so far", f"prior skills {', '.join(skills)}")):
        ax.set_xticks(xs, labels)
        ax.set_ylim(-0.05, 1.05)
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"{' vs '.join(m.upper() for m in results['methods'])}, continual over {len(task_names)} hidden-rule tasks (seed {results['seed']})")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def _fmt(x: float) -> str:
    return f"{x:.3f}"


def write_report(results: dict, task_names: list[str], skills: list[str], timing: dict, config, path: str,
                 headline: list[str] = ()) -> None:
    c = results["teacher_ceiling"]
    arms = " vs ".join(m.upper() for m in results["methods"])
    lines = [f"# {arms} demo (world {results.get('world', 'substitution')}, seed {results['seed']})", ""]
    if headline:
        lines += ["```", *headline, "```", ""]
    lines += [f"Base model `{results['base_model']}`; new tasks (hidden substitution rules): "
              + ", ".join(f"`{n}` ({results['rules'][n]})" for n in task_names) + ".",
              f"{config.demo.steps_per_task} steps per task, {config.demo.prompts_per_step} prompts per step, "
              f"lr {config.demo.lr}; {config.demo.eval_examples} held-out rows per task, greedy, scorer "
              f"`{world.scorer(config.demo.world)}`.", "",
              "## Teacher ceiling (base model, before training)", "",
              "| task | student (no demonstration) | teacher (demonstration in context) |", "|---|---:|---:|"]
    lines += [f"| {n} | {_fmt(c['student'][n])} | {_fmt(c['teacher'][n])} |" for n in task_names]
    lines += ["", "Prior skills (base): " + ", ".join(f"{k} {_fmt(v)}" for k, v in c["prior"].items()), "",
              "## After each stage", "",
              "| method | after | tasks trained so far | all new tasks | prior skills |", "|---|---|---:|---:|---:|"]
    for method in results["methods"]:
        for st in results["methods"][method]["summary"]["stages"]:
            lines.append(f"| {method.upper()} | {st['stage']}. {st['task']} | {_fmt(st['seen_tasks_accuracy'])} | "
                         f"{_fmt(st['all_new_tasks_accuracy'])} | {_fmt(st['prior_accuracy'])} |")
    lines += ["", "## Teacher (demonstration in context) after each stage", "",
              "SDFT's target on the next task is only as good as this in-context skill.", "",
              "| method | after | " + " | ".join(task_names) + " |", "|---|---|" + "---:|" * len(task_names),
              "| both | base | " + " | ".join(_fmt(c["teacher"][n]) for n in task_names) + " |"]
    for method in results["methods"]:
        for n, row in zip(task_names, results["methods"][method]["teacher_after_stage"]):
            lines.append(f"| {method.upper()} | {n} | " + " | ".join(_fmt(row[t]) for t in task_names) + " |")
    lines += ["", "## KL(fine-tuned || base) on each stage's task prompts (nats per answer)", "",
              "| method | " + " | ".join(f"after {n}" for n in task_names) + " |", "|---|" + "---:|" * len(task_names)]
    for method in results["methods"]:
        lines.append(f"| {method.upper()} | " + " | ".join(_fmt(x) for x in results["methods"][method]["kl_to_base_after_stage"]) + " |")
    lines += ["", "## Summary", "",
              "| method | final new-task acc | final prior acc | prior forgetting (base - final) | "
              "new-task forgetting (after own stage - final) |", "|---|---:|---:|---:|---:|"]
    for method in results["methods"]:
        s = results["methods"][method]["summary"]
        lines.append(f"| {method.upper()} | {_fmt(s['final_new_tasks_accuracy'])} | "
                     f"{_fmt(s['final_prior_accuracy'])} | {_fmt(s['prior_forgetting'])} | "
                     f"{_fmt(s['new_task_forgetting'])} |")
    lines += ["", "## Full accuracy matrices", ""]
    for method in results["methods"]:
        m = results["methods"][method]
        lines += [f"{method.upper()}:", "", "| after | " + " | ".join(m["columns"]) + " |",
                  "|---|" + "---:|" * len(m["columns"]),
                  "| base | " + " | ".join(_fmt(x) for x in m["base_row"]) + " |"]
        lines += [f"| {n} | " + " | ".join(_fmt(x) for x in row) + " |" for n, row in zip(task_names, m["matrix"])]
        lines.append("")
    lines += ["## Wall-clock", "", " | ".join(f"{k} {v:.0f}s" for k, v in timing.items()), "",
              "Plot: demo.png; per-method curves: sdft/continual.png, sft/continual.png.", ""]
    with open(path, "w") as f:
        f.write("\n".join(lines))
