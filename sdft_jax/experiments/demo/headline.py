"""The demo's headline: the study's comparison (docs/DEMO.md, "The study") on one run, in a few
lines a newcomer can read. Stage 1: the prior skills each arm keeps when its task-1 accuracy first
reaches the best accuracy every arm reaches (matched new-task accuracy, not matched steps), and the
teacher on task 2, not yet trained (SDFT's signal for stage 2). Stage 2: what each arm learned next."""
from __future__ import annotations

from sdft_jax.experiments.demo.study_report import arm_record, first_crossing

# Below this best task-1 accuracy an arm has learned (almost) nothing: no accuracy to match at.
MIN_MATCHED_ACCURACY = 0.1


def headline(results: dict) -> list[str]:
    """The lines: a table, one row per arm, and its legend (a run with per-step curves and at least
    2 new tasks)."""
    arms = list(results["methods"])
    recs = {arm: arm_record(results, arm) for arm in arms}
    stages = results["methods"][arms[0]]["summary"]["stages"]
    t1, t2 = stages[0]["task"], stages[1]["task"]
    base_prior = results["methods"][arms[0]]["summary"]["base_prior_accuracy"]
    best = {arm: r["stage1_max_task1"] for arm, r in recs.items()}
    level = min(best.values())
    matched = level >= MIN_MATCHED_ACCURACY
    w = max(len(a) for a in arms + ["arm"])
    columns = [f"prior@{level:.2f}", f"{t1}", "prior", "KL", f"teacher:{t2}", "|", f"{t2}", f"{t1}", "prior"]
    widths = [1 if c == "|" else max(len(c), 6) for c in columns]

    def row(name: str, cells: list[str]) -> str:
        return (f"  {name:<{w}}  " + "  ".join(f"{c:<{n}}" for c, n in zip(cells, widths))).rstrip()

    stage1 = sum(widths[:5]) + 2 * 4
    lines = [f"headline: seed {results['seed']}, lr {results['lr']:g}, one seed (the study in docs/DEMO.md: 5 seeds, "
             "3 rates, a second base, intervals)",
             f"  {'':<{w}}  {f'end of stage 1 (task {t1})':<{stage1}}  |  end of stage 2 (task {t2})",
             row("arm", columns)]
    for arm, r in recs.items():
        c1 = r["curves"][0]
        kept = first_crossing(c1["acc"], c1["prior"], level) if matched else None
        lines.append(row(arm.upper(), ["-" if kept is None else f"{kept:.3f}", f"{r['stage1_task1']:.3f}",
                                       f"{r['stage1_prior']:.3f}", f"{r['kl_stage1']:.1f}",
                                       f"{r['teacher_task2_export_stage1']:.3f}", "|", f"{r['stage2_task2']:.3f}",
                                       f"{r['stage2_task1']:.3f}", f"{r['final_prior']:.3f}"]))
    if matched:
        lines.append(f"prior@{level:.2f}: the prior skills (base {base_prior:.3f}) when task-1 accuracy first reaches "
                     f"{level:.2f}, the best every arm reaches in stage 1 (matched new-task accuracy)")
    else:
        worst = min(best, key=best.get)
        lines.append(f"prior@: none, {worst.upper()}'s best task-1 accuracy in stage 1 is {level:.3f}: no accuracy "
                     "to match the arms at")
    lines.append(f"teacher:{t2}: the stage-1 model with the demonstration on task {t2}, not yet trained: stage 2's "
                 f"teacher unless anchored to the base (base {recs[arms[0]]['teacher_task2_base']:.3f}); "
                 "KL(model || base) in nats per answer")
    return lines
