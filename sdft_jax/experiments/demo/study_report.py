"""The demo study's report (docs/DEMO.md, "The study"): run folders -> one JSON -> tables and plots.

    python -m sdft_jax.experiments.demo.study_report collect --out docs/results/demo_study.json
    python -m sdft_jax.experiments.demo.study_report render docs/results/demo_study.json \
        --update docs/DEMO.md --figure docs/study.png

`collect` reads every demo results.json under the study's folders ($SDFT_JAX_CACHE/runs/demo_study_*,
or --runs) and keeps, per run and arm, the scalars and stage curves the analysis needs (rounded: the
JSON is small enough to commit). `render` computes every number in the doc from that JSON alone, with
the measures and tests written in docs/DEMO.md before the first run: retention of the prior skills
at matched new-task accuracy and at matched KL along stage 1, the teacher on the task not yet
trained, sample std, 95% Student-t intervals and paired t-tests across seeds.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

from sdft_jax.experiments import stats
from sdft_jax.experiments.demo.aggregate import load_runs
from sdft_jax.experiments.demo.study import (ARMS, FALLBACK_RATE, RATES, SEEDS, VALIDATION_SEEDS, choose_rate,
                                             folder, prior_mean)
from sdft_jax.runtime.doc_block import emit, link

ACCURACY_LEVELS = (0.25, 0.5)  # matched new-task accuracy, stage 1
KL_LEVELS = (20.0, 30.0)  # matched KL(model || base), nats, stage 1
PHASES = ("validation", "A", "B")


def first_crossing(xs, ys, level: float):
    """y where x first reaches `level` along the curve, linear between the two points around it;
    None when x never does."""
    previous = None  # the last point with an x (a missing x is skipped)
    for x, y in zip(xs, ys):
        if x is None:
            continue
        if x >= level:
            if previous is None:
                return y
            x0, y0 = previous
            return y0 + (level - x0) / (x - x0) * (y - y0)
        previous = (x, y)
    return None


def _curve(rows: list[dict], task: str, other: str, kl_at_start) -> dict:
    return {"step": [r["step"] for r in rows], "acc": [r[task] for r in rows],
            "prior": [prior_mean(r) for r in rows],
            "kl": [kl_at_start if r["step"] == 0 else r.get("kl") for r in rows],
            "teacher_other": [r.get(f"teacher:{other}") for r in rows] if other else []}


def cut_counts(rows: list[dict], examples: int) -> tuple[int, int]:
    """(answers that reached the evaluation cap, answers scored) over evaluation rows (dicts holding
    NAME and NAME/cut columns, `examples` answers each)."""
    cut = sum(v for r in rows for k, v in r.items() if k.endswith("/cut"))
    return int(cut), sum(1 for r in rows for k in r if k.endswith("/cut")) * examples


def arm_record(run: dict, arm: str) -> dict:
    """What the analysis reads of one arm of one run (2 stages)."""
    m = run["methods"][arm]
    t1, t2 = (s["task"] for s in m["summary"]["stages"][:2])
    row1, row2 = (dict(zip(m["columns"], r)) for r in m["matrix"][:2])
    c1 = _curve(m["curves"][0], t1, t2, 0.0)
    c2 = _curve(m["curves"][1], t2, "", None)
    rows = [dict(zip(m["columns"], r)) for r in m["matrix"]] + [r for c in m["curves"] for r in c if r["step"] > 0]
    cut, scored = cut_counts(rows, run.get("eval_examples", 64))
    return {
        "stage1_task1": row1[t1], "stage1_prior": prior_mean(row1), "stage1_max_task1": max(c1["acc"]),
        "prior_by_skill": [{k[len("prior:"):]: v for k, v in row.items() if k.startswith("prior:") and "/" not in k}
                           for row in (row1, row2)],
        "teacher_task2_base": c1["teacher_other"][0], "teacher_task2_end_stage1": c1["teacher_other"][-1],
        "teacher_task2_export_stage1": row1[f"teacher:{t2}"],
        "stage2_task2": row2[t2], "stage2_task1": row2[t1], "final_prior": prior_mean(row2),
        "kl_stage1": m["kl_to_base_after_stage"][0],
        "retention_at_accuracy": {f"{a:g}": first_crossing(c1["acc"], c1["prior"], a) for a in ACCURACY_LEVELS},
        "retention_at_kl": {f"{k:g}": first_crossing(c1["kl"], c1["prior"], k) for k in KL_LEVELS},
        "cut_answers": int(cut), "scored_answers": int(scored),
        "curves": [{k: [None if v is None else round(float(v), 4) for v in vals] for k, vals in c.items()}
                   for c in (c1, c2)]}


def collect(roots: dict[str, str]) -> dict:
    out = {"measures": {"accuracy_levels": ACCURACY_LEVELS, "kl_levels": KL_LEVELS}, "runs": [], "base_rows": []}
    for phase, root in roots.items():
        if not os.path.isdir(root):
            continue
        try:
            runs = load_runs([root])
        except FileNotFoundError:
            continue
        runs = [r for r in runs if all("curves" in m and len(m["curves"]) >= 2 for m in r["methods"].values())]
        for run in runs:  # (a run without curves or with fewer than 2 stages is not a study run)
            rec = {"phase": phase, "pretrain_seed": run.get("pretrain_seed", 0), "seed": run["seed"], "lr": run["lr"]}
            examples = _eval_examples(run)
            first = next(iter(run["methods"].values()))  # the base row: the same for every arm, counted once
            cut, scored = cut_counts([dict(zip(first["columns"], first["base_row"]))], examples)
            out["base_rows"].append({**rec, "cut_answers": cut, "scored_answers": scored})
            for arm in run["methods"]:
                out["runs"].append({**rec, "arm": arm, **arm_record({**run, "eval_examples": examples}, arm)})
        if phase == "validation" and runs:
            out["r_star"], out["r_star_rule"] = choose_rate(runs)
    return out


def _eval_examples(run: dict) -> int:
    cfg = os.path.join(run["dir"], "demo_config.json")
    return json.load(open(cfg))["demo"]["eval_examples"] if os.path.isfile(cfg) else 64


# ---- render: every number below comes from the collected JSON ----

def _sel(data, phase, **kw) -> list[dict]:
    return [r for r in data["runs"] if r["phase"] == phase and all(r[k] == v for k, v in kw.items())]


def _fmt(s: dict, digits: int = 3) -> str:
    if s["mean"] is None:
        return "-"
    ci = f" [{s['ci95'][0]:.{digits}f}, {s['ci95'][1]:.{digits}f}]" if s["ci95"] else ""
    return f"{s['mean']:.{digits}f}{ci}"


def _by_seed(records, value) -> dict:
    return {(r["pretrain_seed"], r["seed"]): value(r) for r in records}


def frontier(data, phase, arm, key, level) -> dict:
    """Per seed: the arm's best retention over the rates whose stage 1 reaches `level` (None: none does)."""
    out = {}
    for r in _sel(data, phase, arm=arm):
        v = r[key][f"{level:g}"]
        k = (r["pretrain_seed"], r["seed"])
        out[k] = v if out.get(k) is None else (out[k] if v is None else max(out[k], v))
    return out


def _diff(a: dict, b: dict) -> dict:
    """Paired a - b over the seeds where both are defined, with how many seeds each side left undefined."""
    keys = sorted(set(a) | set(b))
    out = stats.paired([a.get(k) for k in keys], [b.get(k) for k in keys])
    return {**out, "undefined": (sum(a.get(k) is None for k in keys), sum(b.get(k) is None for k in keys))}


# How a comparison's verdict is read (docs/DEMO.md, the amendment): "positive" needs the 95% interval
# above 0; "negative" below 0; "drop" a mean at or below -0.2; "equal" is reported as "no difference
# detected" when the interval holds 0 (not as evidence of equality: 5 seeds, 4 degrees of freedom);
# "sign" (H7) gives the mean's sign, to be read against base A at the same rate.
def verdict(d: dict, criterion: str) -> str:
    if criterion == "sign":  # H7: read against base A's row at the same rate
        return "-" if d["mean"] is None else "mean above 0" if d["mean"] > 0 else "mean below 0" if d["mean"] < 0 else "0"
    if d["n"] < 2 or d["ci95"] is None:
        return "undetermined (fewer than 2 pairs)"
    lo, hi = d["ci95"]
    if criterion == "positive":
        return "holds" if lo > 0 else "does not hold"
    if criterion == "negative":
        return "holds" if hi < 0 else "does not hold"
    if criterion == "drop":
        return "holds" if d["mean"] <= -0.2 else "does not hold"
    return "no difference detected" if lo <= 0 <= hi else "a difference: does not hold"


def _diff_row(h: str, label: str, d: dict, criterion: str) -> str:
    p = "-" if d["p"] is None else f"{d['p']:.3f}"
    return (f"| {h}: {label} | {d['n']} ({d['undefined'][0]}, {d['undefined'][1]}) | {_fmt(d)} | {p} | "
            f"{d['positive']} / {d['zero']} / {d['negative']} | {criterion}: {verdict(d, criterion)} |")


def r_star(data) -> float:
    return data.get("r_star", FALLBACK_RATE)


def _gap(a: dict, b: dict) -> dict:
    """Per seed |a - b| (None where either is undefined)."""
    return {k: None if a.get(k) is None or b.get(k) is None else abs(a[k] - b[k]) for k in set(a) | set(b)}


def comparisons(data) -> list[tuple[str, str, dict, str]]:
    """(hypothesis, label, paired difference, criterion) for every comparison the pre-registration
    and its amendment name."""
    out = []
    acc = {a: {arm: frontier(data, "A", arm, "retention_at_accuracy", a) for arm in ARMS.split("/")}
           for a in ACCURACY_LEVELS}
    kl = {k: {arm: frontier(data, "A", arm, "retention_at_kl", k) for arm in ARMS.split("/")} for k in KL_LEVELS}
    for a, f in acc.items():
        out += [("H1", f"retention at accuracy {a:g}: sdft - sft", _diff(f["sdft"], f["sft"]), "positive"),
                ("H2", f"retention at accuracy {a:g}: sft@plain - sft", _diff(f["sft@plain"], f["sft"]), "positive"),
                ("H2", f"retention at accuracy {a:g}: sdft - sft@plain", _diff(f["sdft"], f["sft@plain"]), "equal"),
                ("H3", f"retention at accuracy {a:g}: offline - sft@plain", _diff(f["offline"], f["sft@plain"]),
                 "equal"),
                ("H3", f"retention at accuracy {a:g}: sdft - offline", _diff(f["sdft"], f["offline"]), "equal")]
    for k, f in kl.items():
        out.append(("H6", f"retention at KL {k:g}: sdft - sft", _diff(f["sdft"], f["sft"]), "equal"))
    for a, k in zip(ACCURACY_LEVELS, KL_LEVELS):  # H6's claim: a smaller gap at matched KL than at matched accuracy
        out.append(("H6", f"|sdft - sft| at KL {k:g} - at accuracy {a:g}",
                    _diff(_gap(kl[k]["sdft"], kl[k]["sft"]), _gap(acc[a]["sdft"], acc[a]["sft"])), "negative"))
    recs = _sel(data, "A", arm="sdft", lr=3e-4)  # the stage-2 teacher: stage 1's export, demonstration in context
    out.append(("H5", "teacher on task 2 after stage 1 (exported model) - base, sdft at 0.0003",
                _diff(_by_seed(recs, lambda r: r["teacher_task2_export_stage1"]),
                      _by_seed(recs, lambda r: r["teacher_task2_base"])), "drop"))
    for lr in (1e-4, 3e-4):
        sd, sb = (_by_seed(_sel(data, "A", arm=arm, lr=lr), lambda r: r["stage2_task2"]) for arm in ("sdft", "sdft:base"))
        out.append(("H5", f"task-2 accuracy after stage 2 at {lr:g}: sdft:base - sdft", _diff(sb, sd), "positive"))
    if _sel(data, "B"):  # H7: the signs on base B at r*, next to base A at the same rate
        level = ACCURACY_LEVELS[0]
        measures = {f"retention at accuracy {level:g}": lambda r: r["retention_at_accuracy"][f"{level:g}"],
                    "prior skills, end of stage 1": lambda r: r["stage1_prior"]}
        for phase in ("A", "B"):
            for what, value in measures.items():
                v = {arm: _by_seed(_sel(data, phase, arm=arm, lr=r_star(data)), value)
                     for arm in ("sdft", "sft", "sft@plain")}
                out += [("H7", f"base {phase} at r*, {what}: {x} - {y}", _diff(v[x], v[y]), "sign")
                        for x, y in (("sdft", "sft"), ("sft@plain", "sft"), ("sdft", "sft@plain"))]
    return out


# The pre-registered predictions, in short (docs/DEMO.md, "Hypotheses and predicted outcomes").
PREDICTIONS = {
    "H1": "sdft retains more than sft at matched accuracy (interval above 0)",
    "H2": "sft@plain retains more than sft (interval above 0), and as much as sdft (interval holds 0)",
    "H3": "offline retains as much as sft@plain, and as much as sdft (intervals hold 0)",
    "H4": "rejection's stage-1 task-1 accuracy stays below 0.05 at every rate, its prior skills near the base's",
    "H5": "sdft's stage-1 model drops >= 0.2 on task 2 with the demonstration at 3e-4; sdft:base learns task 2 "
          "better than sdft (interval above 0)",
    "H6": "at matched KL the sdft - sft difference holds 0, and is smaller than at matched accuracy",
    "H7": "on base B at r* the differences have base A's signs at the same rate",
    "audit": "under 1% of the scored answers reach the 24-token cap",
}


def audit(data) -> tuple[int, int]:
    """(answers cut at the cap, answers scored) over bases A and B (validation is not evidence)."""
    evidence = [r for r in data["runs"] + data.get("base_rows", []) if r["phase"] != "validation"]
    return sum(r["cut_answers"] for r in evidence), sum(r["scored_answers"] for r in evidence)


def outcomes(data) -> list[str]:
    """Each prediction next to what came out (the verdicts of comparisons(); H4, H7 and the audit as stated)."""
    rows = comparisons(data)
    lines = []
    for h in ("H1", "H2", "H3", "H4", "H5", "H6", "H7"):
        if h == "H4":
            got = _rejection_outcome(_sel(data, "A", arm="rejection"))
        elif h == "H7":
            got = _sign_outcome([(label, d) for hh, label, d, _ in rows if hh == "H7"])
        else:
            got = "; ".join(f"{label}: {_fmt(d)}: {verdict(d, c)}" for hh, label, d, c in rows if hh == h)
        lines.append(f"- **{h}** (predicted: {PREDICTIONS[h]}). Came out: {got or 'not run yet'}.")
    cut, scored = audit(data)
    share = 100 * cut / max(scored, 1)
    lines.append(f"- **Truncation** (predicted: {PREDICTIONS['audit']}). Came out: {share:.2f}% "
                 f"({'holds' if share < 1 else 'does not hold'}).")
    return lines


def _rejection_outcome(recs: list[dict]) -> str:
    if not recs:
        return ""
    best = max(r["stage1_max_task1"] for r in recs)
    rates = sorted({r["lr"] for r in recs})
    prior = {lr: stats.summary([r["stage1_prior"] for r in recs if r["lr"] == lr])["mean"] for lr in rates}
    base = stats.summary([r["curves"][0]["prior"][0] for r in recs])["mean"]
    return (f"best stage-1 task-1 accuracy {best:.3f} over {len(recs)} runs ({'holds' if best < 0.05 else 'does not hold'}"
            f"); prior skills at the end of stage 1 (base {base:.3f}), mean per rate: "
            + ", ".join(f"{lr:g} {v:.3f}" for lr, v in prior.items()))


def _sign_outcome(h7: list[tuple[str, dict]]) -> str:
    """Base B's sign of each difference next to base A's at the same rate."""
    signs = {label: verdict(d, "sign") for label, d in h7}
    out = []
    for label, sign_b in signs.items():
        if label.startswith("base B"):
            sign_a = signs[label.replace("base B", "base A", 1)]
            agree = "undefined" if "-" in (sign_a, sign_b) else "same" if sign_a == sign_b else "not the same"
            out.append(f"{label.split(', ', 1)[1]}: A {sign_a}, B {sign_b} ({agree})")
    return "; ".join(out)


PER_RATE = [("task 1, end of stage 1", "stage1_task1"), ("task 1, best curve point of stage 1", "stage1_max_task1"),
            ("prior skills, end of stage 1", "stage1_prior"),
            ("teacher on task 2, base", "teacher_task2_base"),
            ("teacher on task 2, end of stage 1: exported model (stage 2's starting teacher)",
             "teacher_task2_export_stage1"),
            ("teacher on task 2, end of stage 1: the run's EMA weights (every arm keeps one; sdft's is its teacher)",
             "teacher_task2_end_stage1"),
            ("task 2 after stage 2", "stage2_task2"), ("task 1 after stage 2", "stage2_task1"),
            ("prior skills after stage 2", "final_prior"), ("KL(model || base) after stage 1, nats", "kl_stage1")]


def _cell(values, digits: int = 3) -> str:
    s = stats.summary(values)
    return f"{_fmt(s, digits)} n={s['n']}"


def per_rate_table(data, phase) -> str:
    arms = [a for a in ARMS.split("/") if _sel(data, phase, arm=a)]
    lines = ["| lr | measure | " + " | ".join(arms) + " |", "|---|---|" + "---|" * len(arms)]
    for lr in sorted({r["lr"] for r in _sel(data, phase)}):
        for label, key in PER_RATE:
            cells = [_cell([r[key] for r in _sel(data, phase, arm=a, lr=lr)], 2 if "KL" in label else 3) for a in arms]
            lines.append(f"| {lr:g} | {label} | " + " | ".join(cells) + " |")
        for a_level in ACCURACY_LEVELS:  # per rate: which rates feed the frontier, and how often each is defined
            cells = [_cell([r["retention_at_accuracy"][f"{a_level:g}"] for r in _sel(data, phase, arm=a, lr=lr)])
                     for a in arms]
            lines.append(f"| {lr:g} | retention at accuracy {a_level:g} (n = seeds that reach it) | "
                         + " | ".join(cells) + " |")
    return "\n".join(lines)


def skill_table(data, phase) -> str:
    """Forgetting per prior skill: each skill's accuracy after stage 1 and after stage 2, per arm and rate."""
    arms = [a for a in ARMS.split("/") if _sel(data, phase, arm=a)]
    recs = _sel(data, phase)
    skills = sorted({k for r in recs for k in r["prior_by_skill"][0]})
    lines = ["| lr | prior skill | after | " + " | ".join(arms) + " |", "|---|---|---|" + "---|" * len(arms)]
    for lr in sorted({r["lr"] for r in recs}):
        for skill in skills:
            for stage in (0, 1):
                cells = [_fmt(stats.summary([r["prior_by_skill"][stage][skill] for r in recs
                                             if r["arm"] == a and r["lr"] == lr])) for a in arms]
                lines.append(f"| {lr:g} | {skill} | stage {stage + 1} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def frontier_table(data) -> str:
    arms = ARMS.split("/")
    lines = ["| retention of the prior skills (stage 1) | " + " | ".join(arms) + " |", "|---|" + "---|" * len(arms)]
    for kind, key, levels in (("new-task accuracy", "retention_at_accuracy", ACCURACY_LEVELS),
                              ("KL, nats", "retention_at_kl", KL_LEVELS)):
        for level in levels:
            cells = []
            for arm in arms:
                f = frontier(data, "A", arm, key, level)
                s = stats.summary(list(f.values()))
                cells.append(f"{_fmt(s)} ({s['n']}/{len(f)})")
            lines.append(f"| at {kind} {level:g} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def markdown(data, figure: str = "") -> str:
    a_runs = _sel(data, "A")
    seeds = sorted({r["seed"] for r in a_runs})
    rates = sorted({r["lr"] for r in a_runs})
    planned = planned_runs()
    done = {phase: len(_sel(data, phase)) for phase in PHASES}
    status = ("Every planned run is in." if done == planned else
              "**In progress: " + ", ".join(f"{p} {done[p]} of {planned[p]}" for p in PHASES) +
              " planned arm-runs. The tables show what has run; no conclusion is drawn until every run is in.**")
    b_rates = sorted({r["lr"] for r in _sel(data, "B")})
    if b_rates and b_rates != [r_star(data)]:
        status += f" **Base B ran at {b_rates}, not at r* = {r_star(data):g}.**"
    cut, scored = audit(data)
    lines = [status, "",
             f"Base A: {len(a_runs)} arm-runs (seeds {', '.join(map(str, seeds))}; "
             f"rates {', '.join(f'{x:g}' for x in rates)}). Base B: {len(_sel(data, 'B'))} arm-runs. "
             f"Validation: {len(_sel(data, 'validation'))} arm-runs; r* = {r_star(data):g} "
             f"({data.get('r_star_rule', 'validation not run')}).",
             "", f"Truncation audit (bases A and B, every evaluation: between stages and on the curves, the base "
             f"once per run): {cut} of {scored} scored answers reached the 24-token cap "
             f"({100 * cut / max(scored, 1):.2f}%).", "",
             "### Retention at matched new-task accuracy and at matched KL (base A, stage 1)", "",
             "Mean [95% interval] over seeds of each arm's best retention over the rates that reach the "
             "level; (seeds that reach it / seeds).", "", frontier_table(data), "",
             "### Paired differences (seeds; mean [95% interval], two-sided paired t-test)", "",
             "pairs (undefined: first arm, second arm) = seeds where both are defined (seeds where each is not).", "",
             "| hypothesis: comparison | pairs | difference | p | seeds + / 0 / - | criterion: verdict |",
             "|---|---|---|---:|---|---|"]
    lines += [_diff_row(h, label, d, criterion) for h, label, d, criterion in comparisons(data)]
    lines += ["", "### Each prediction next to what came out (generated from the same JSON)", "", *outcomes(data)]
    lines += ["", "### Every arm and rate (base A; mean [95% interval] over seeds)", "", per_rate_table(data, "A")]
    if _sel(data, "B"):
        lines += ["", "### Base B (pretraining seed 1) at r*", "", per_rate_table(data, "B")]
    lines += ["", "### Forgetting per prior skill (accuracy after each stage, base 1.000 on each; mean [95% "
              "interval] over seeds)"]
    for phase in ("A", "B"):
        if _sel(data, phase):
            lines += ["", f"Base {phase}:", "", skill_table(data, phase)]
    if figure:
        lines += ["", f"![stage-1 curves]({figure})"]
    return "\n".join(lines)


def planned_runs() -> dict[str, int]:
    """Arm-runs per phase as docs/DEMO.md's design fixes them."""
    arms = len(ARMS.split("/"))
    return {"validation": 2 * len(VALIDATION_SEEDS) * len(RATES), "A": arms * len(SEEDS) * len(RATES),
            "B": arms * len(SEEDS)}


def plot(data, path: str) -> None:
    """Left: stage 1, prior skills against new-task accuracy (mean curve per arm and rate, base A);
    right: the teacher on task 2 during stage 1 (not yet trained), per arm at each rate."""
    from matplotlib.figure import Figure
    arms = ARMS.split("/")
    rates = sorted({r["lr"] for r in _sel(data, "A")})
    fig = Figure(figsize=(12, 4.5))
    if not rates:
        fig.text(0.5, 0.5, "no base-A run has finished yet", ha="center")
        fig.savefig(path, dpi=100)
        return
    axes = fig.subplots(1, len(rates) + 1)
    for j, lr in enumerate(rates):
        ax = axes[j]
        # Dashed arms coincide with the solid one before them in stage 1 by construction (sdft:base's
        # teacher starts from the base like sdft's; offline's targets are the base teacher's plain answers).
        for arm, color, style in zip(arms, ("C0", "C9", "C3", "C1", "C2", "C4"), ("-o", "--s", "-o", "-o", "--s", "-o")):
            recs = _sel(data, "A", arm=arm, lr=lr)
            if not recs:
                continue
            acc = np.mean([r["curves"][0]["acc"] for r in recs], axis=0)
            prior = np.mean([r["curves"][0]["prior"] for r in recs], axis=0)
            ax.plot(acc, prior, style, ms=3, color=color, label=arm, mfc="none" if "--" in style else color)
        ax.set_title(f"stage 1, lr {lr:g} (mean over seeds)", fontsize=9)
        ax.set_xlabel("task-1 accuracy")
        ax.set_xlim(-0.03, 1.03)
        ax.set_ylim(-0.03, 1.03)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("prior-skill accuracy")
    axes[0].legend(fontsize=7)
    ax = axes[-1]
    for arm, color in zip(arms, ("C0", "C9", "C3", "C1", "C2", "C4")):
        for lr, ls in zip(rates, (":", "--", "-")):
            recs = _sel(data, "A", arm=arm, lr=lr)
            if recs and recs[0]["curves"][0]["teacher_other"]:
                ax.plot(recs[0]["curves"][0]["step"], np.mean([r["curves"][0]["teacher_other"] for r in recs], axis=0),
                        ls, color=color, label=f"{arm} {lr:g}" if arm in ("sdft", "sft") else None)
    ax.set_title("teacher on task 2, stage 1\n(the run's EMA weights)", fontsize=9)
    ax.set_xlabel("step")
    ax.set_ylim(-0.03, 1.03)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m sdft_jax.experiments.demo.study_report",
                                     description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="action", required=True)
    c = sub.add_parser("collect")
    c.add_argument("--out", required=True)
    c.add_argument("--runs", default="", help="a folder holding demo_study_<phase> folders (default: the cache's)")
    r = sub.add_parser("render")
    r.add_argument("json")
    r.add_argument("--update", default="", help="a markdown file whose study block is replaced")
    r.add_argument("--figure", default="")
    args = parser.parse_args(argv)
    if args.action == "collect":
        roots = {p: os.path.join(args.runs, f"demo_study_{p}") if args.runs else folder(p) for p in PHASES}
        data = collect(roots)
        with open(args.out, "w") as f:  # one arm-run per line: small, and diffs show which runs changed
            f.write("{\n" + ",\n".join(
                f'"{k}": ' + (json.dumps(v, sort_keys=True) if not isinstance(v, list) else
                              "[\n" + ",\n".join(json.dumps(x, sort_keys=True) for x in v) + "\n]")
                for k, v in sorted(data.items())) + "\n}\n")
        print(f"{len(data['runs'])} arm-runs -> {args.out}")
        return 0
    data = json.load(open(args.json))
    if args.figure:
        plot(data, args.figure)
    emit(markdown(data, link(args.figure, args.update)), args.update, "study")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
