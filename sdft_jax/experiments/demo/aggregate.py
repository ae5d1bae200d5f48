"""The demo's results over seeds and learning rates: tables, the predictions checked, a Pareto plot.

    python -m sdft_jax.experiments.demo.aggregate runs/demo runs/demo_seed1 runs/demo_seed2        # a table
    python -m sdft_jax.experiments.demo.aggregate runs/demo_sweep --markdown --update docs/DEMO.md --pareto docs/pareto.png

Each argument is a demo workdir or a folder holding some (a `sdft_jax.sweep` folder): every
results.json written by the demo runner below it is one run (a seed and a learning rate). With
--update, the text between `<!-- results:begin -->` and `<!-- results:end -->` of that file is
replaced, so the doc's numbers always come from the runs.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

from matplotlib.figure import Figure  # no pyplot: no global backend, no open figures
from sdft_jax.runtime.doc_block import emit, link



def arms(runs: list[dict]) -> list[str]:
    """The arms the runs trained (demo.methods), in the order the first run lists them."""
    out = []
    for r in runs:
        out += [m for m in r["methods"] if m not in out]
    return out
ROWS = [  # (label, function of one method's record -> value)
    ("new-task accuracy after its own stage", lambda m: np.mean([m["matrix"][i][m["columns"].index(s["task"])]
                                                                 for i, s in enumerate(m["summary"]["stages"])])),
    ("final new-task accuracy (all tasks)", lambda m: m["summary"]["final_new_tasks_accuracy"]),
    ("final prior-skill accuracy", lambda m: m["summary"]["final_prior_accuracy"]),
    ("prior forgetting (base - final)", lambda m: m["summary"]["prior_forgetting"]),
    ("new-task forgetting (own stage - final)", lambda m: m["summary"]["new_task_forgetting"]),
    ("teacher accuracy after stage 1", lambda m: np.mean(list(m["teacher_after_stage"][0].values()))),
    ("KL(tuned || base) after stage 1, nats", lambda m: m["kl_to_base_after_stage"][0]),
    ("KL(tuned || base), mean over stages", lambda m: np.mean(m["kl_to_base_after_stage"])),
]


def load_runs(paths: list[str]) -> list[dict]:
    """Every demo results.json under the paths (a demo run's own method folders hold continual
    results.json files without `teacher_ceiling`; those are skipped), sorted by (lr, seed)."""
    runs = []
    for path in paths:
        for root, _, files in os.walk(path):
            if "results.json" in files:
                r = json.load(open(os.path.join(root, "results.json")))
                if "teacher_ceiling" in r:
                    runs.append({**r, "dir": root})
    if not runs:
        raise FileNotFoundError(f"no demo results.json under {', '.join(paths)}")
    return sorted(runs, key=lambda r: (r.get("lr", 0.0), r["seed"]))


def _mean_std(vals) -> str:
    """Mean ± sample std (ddof=1: over 3 seeds, ddof=0 understated the spread by ~22%)."""
    return f"{np.mean(vals):.3f} ± {np.std(vals, ddof=1) if len(vals) > 1 else 0.0:.3f}"


def table(workdirs: list[str], runs: list[dict] | None = None) -> str:
    """Mean ± std over the runs (seeds) of every ROWS metric, per method."""
    runs = runs if runs is not None else load_runs(workdirs)
    seeds = ", ".join(str(r["seed"]) for r in runs)
    names = arms(runs)
    lines = [f"Mean ± sample std over {len(runs)} seeds ({seeds}); per seed in brackets.", "",
             "| metric | " + " | ".join(m.upper() for m in names) + " |", "|---|" + "---|" * len(names)]
    for label, fn in ROWS:
        cells = []
        for method in names:
            vals = [float(fn(r["methods"][method])) for r in runs if method in r["methods"]]
            cells.append(f"{_mean_std(vals)} [{', '.join(f'{v:.2f}' for v in vals)}]")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    teacher = [np.mean(list(r["teacher_ceiling"]["teacher"].values())) for r in runs]
    student = [np.mean(list(r["teacher_ceiling"]["student"].values())) for r in runs]
    prior = [np.mean(list(r["teacher_ceiling"]["prior"].values())) for r in runs]
    lines += ["", f"Base model: student {np.mean(student):.3f}, teacher {np.mean(teacher):.3f} on the new tasks; "
              f"prior skills {np.mean(prior):.3f}."]
    return "\n".join(lines)


def points(runs: list[dict]) -> list[dict]:
    """One point per (run, method): the Pareto plot's coordinates and the mechanism's variables."""
    out = []
    for r in runs:
        for method in r["methods"]:
            m = r["methods"][method]
            out.append(dict(method=method, lr=r.get("lr"), seed=r["seed"], new=float(ROWS[0][1](m)),
                            final_new=m["summary"]["final_new_tasks_accuracy"],
                            prior=m["summary"]["final_prior_accuracy"],
                            forgetting=m["summary"]["prior_forgetting"], kl1=m["kl_to_base_after_stage"][0],
                            kl=float(np.mean(m["kl_to_base_after_stage"]))))
    return out


def dominated(p: dict, others: list[dict]) -> bool:
    """Another point at least as good on both axes (new-task accuracy after its stage, final prior
    accuracy) and better on one."""
    return any(o["new"] >= p["new"] and o["prior"] >= p["prior"] and (o["new"] > p["new"] or o["prior"] > p["prior"])
               for o in others)


def _rank(x) -> np.ndarray:
    x = np.asarray(x, np.float64)
    order = np.argsort(x, kind="stable")
    ranks = np.empty(len(x))
    ranks[order] = np.arange(len(x))
    for v in np.unique(x):  # ties share their mean rank
        ranks[x == v] = ranks[x == v].mean()
    return ranks


def spearman(a, b) -> float:
    ra, rb = _rank(a), _rank(b)
    if ra.std() == 0 or rb.std() == 0:
        return float("nan")
    return float(np.corrcoef(ra, rb)[0, 1])


def predictions(runs: list[dict]) -> list[str]:
    """The hypothesis' predictions (docs/DEMO.md), each computed from the runs."""
    pts = points(runs)
    c = [r["teacher_ceiling"] for r in runs]
    student = np.mean([np.mean(list(x["student"].values())) for x in c])
    teacher = np.mean([np.mean(list(x["teacher"].values())) for x in c])
    prior = np.mean([np.mean(list(x["prior"].values())) for x in c])
    p1 = student < 0.1 and teacher >= 0.9 and prior >= 0.9
    pairs = [(a, b) for a in pts if a["method"] == "sft" for b in pts
             if b["method"] == "sdft" and (b["lr"], b["seed"]) == (a["lr"], a["seed"])]
    p2 = sum(a["kl1"] > b["kl1"] for a, b in pairs)
    sdft, sft = [p for p in pts if p["method"] == "sdft"], [p for p in pts if p["method"] == "sft"]
    front = [p for p in pts if not dominated(p, pts)]
    sdft_beaten = sum(dominated(p, sft) for p in sdft)
    sft_beaten = sum(dominated(p, sdft) for p in sft)
    rho = spearman([p["kl1"] for p in pts], [p["forgetting"] for p in pts])
    verdict = lambda ok: "**holds**" if ok else "**does not hold**"  # noqa: E731
    return [
        f"- P1 (the world works): base student {student:.3f}, teacher {teacher:.3f}, prior skills {prior:.3f} "
        f"(predicted < 0.1, >= 0.9, >= 0.9): {verdict(p1)}.",
        f"- P2 (KL after stage 1, SFT > SDFT): in {p2} of {len(pairs)} (learning rate, seed) pairs: "
        f"{verdict(p2 == len(pairs))}.",
        f"- P3 (SDFT above SFT on the Pareto plot): {sdft_beaten} of {len(sdft)} SDFT points are dominated by an SFT "
        f"point, {sft_beaten} of {len(sft)} SFT points by an SDFT point; the front holds "
        f"{sum(p['method'] == 'sdft' for p in front)} SDFT and {sum(p['method'] == 'sft' for p in front)} SFT points: "
        f"{verdict(sft_beaten > 0 and sdft_beaten == 0)}.",
        f"- P4 (forgetting rises with the KL): Spearman rank correlation between KL after stage 1 and prior "
        f"forgetting over all {len(pts)} points: {rho:+.2f}: {verdict(rho > 0)}.",
    ]


def sweep_table(runs: list[dict]) -> str:
    pts = points(runs)
    lrs = sorted({p["lr"] for p in pts})
    lines = ["| lr | method | seeds | new task after its stage | final new tasks | final prior skills | "
             "KL after stage 1 | KL, mean over stages |", "|---|---|---|---|---|---|---|---|"]
    for lr in lrs:
        for method in arms(runs):
            sel = [p for p in pts if p["lr"] == lr and p["method"] == method]
            lines.append(f"| {lr:g} | {method.upper()} | {len(sel)} | " + " | ".join(
                _mean_std([p[k] for p in sel]) for k in ("new", "final_new", "prior", "kl1", "kl")) + " |")
    return "\n".join(lines)


def stage_table(runs: list[dict]) -> str:
    """Per run, method and stage: new tasks so far, prior skills, teacher accuracy, KL."""
    lines = ["| lr | seed | method | stage | tasks so far | prior skills | teacher (demo in context) | KL to base |",
             "|---|---|---|---|---|---|---|---|"]
    for r in runs:
        for method in r["methods"]:
            m = r["methods"][method]
            for st, teacher, kl in zip(m["summary"]["stages"], m["teacher_after_stage"], m["kl_to_base_after_stage"]):
                lines.append(f"| {r.get('lr', 0):g} | {r['seed']} | {method.upper()} | {st['stage']}. {st['task']} | "
                             f"{st['seen_tasks_accuracy']:.3f} | {st['prior_accuracy']:.3f} | "
                             f"{np.mean(list(teacher.values())):.3f} | {kl:.2f} |")
    return "\n".join(lines)


def pareto_plot(runs: list[dict], path: str) -> None:
    pts = points(runs)
    lrs = sorted({p["lr"] for p in pts})
    markers = dict(zip(lrs, "osD^v<>"))
    fig = Figure(figsize=(6.5, 5))
    ax = fig.subplots()
    for method, color in zip(arms(runs), ("C0", "C3", "C2", "C1", "C4", "C5")):
        for lr in lrs:
            sel = [p for p in pts if p["method"] == method and p["lr"] == lr]
            ax.scatter([p["new"] for p in sel], [p["prior"] for p in sel], c=color, marker=markers[lr], s=50,
                       alpha=0.8, label=f"{method.upper()} lr {lr:g}")
    front = sorted((p for p in pts if not dominated(p, pts)), key=lambda p: p["new"])
    ax.plot([p["new"] for p in front], [p["prior"] for p in front], "k:", lw=1, label="Pareto front (all points)")
    ax.set_xlabel("new-task accuracy (after its own stage, mean over tasks)")
    ax.set_ylabel("prior-skill accuracy after the last stage")
    ax.set_xlim(-0.03, 1.03)
    ax.set_ylim(-0.03, 1.03)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    ax.set_title(f"{runs[0].get('world', 'substitution')} world: one point per method, lr and seed")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def markdown(runs: list[dict], headline_lr: float, pareto: str = "") -> str:
    headline = [r for r in runs if r.get("lr") == headline_lr]
    lines = [f"{len(runs)} runs (learning rates {', '.join(f'{x:g}' for x in sorted({r.get('lr') for r in runs}))}; "
             f"seeds {', '.join(str(s) for s in sorted({r['seed'] for r in runs}))}). Each run trains SDFT and SFT "
             "from the same cached base on the same 3 tasks.", "", "### Predictions, checked", ""]
    lines += predictions(runs)
    if headline:
        lines += ["", f"### The default job's learning rate ({headline_lr:g})", "", table([], headline)]
    lines += ["", "### Every learning rate (mean ± std over seeds)", "", sweep_table(runs)]
    if pareto:
        lines += ["", f"![Pareto plot]({pareto})"]
    lines += ["", "### Per stage", "", stage_table(runs)]
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m sdft_jax.experiments.demo.aggregate", description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="+", help="demo workdirs or folders holding them")
    parser.add_argument("--markdown", action="store_true", help="predictions, tables and per-stage figures")
    parser.add_argument("--update", default="", help="a markdown file whose results block is replaced")
    parser.add_argument("--pareto", default="", help="write the Pareto plot (PNG) here")
    parser.add_argument("--headline_lr", type=float, default=3e-4, help="the default job's learning rate")
    args = parser.parse_args(argv)
    try:
        runs = load_runs(args.paths)
    except FileNotFoundError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    if args.pareto:
        pareto_plot(runs, args.pareto)
    text = markdown(runs, args.headline_lr, link(args.pareto, args.update)) if args.markdown else table([], runs)
    emit(text, args.update)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
