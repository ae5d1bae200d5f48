"""The demo study's measures (docs/DEMO.md, "The study"), on synthetic curves with known answers."""
import numpy as np
import pytest

from sdft_jax.experiments.demo import study, study_report


def test_first_crossing_interpolates_where_the_curve_first_reaches_the_level():
    acc, prior = [0.0, 0.1, 0.4, 0.3, 0.9], [1.0, 0.8, 0.5, 0.45, 0.1]
    # 0.25 lies between 0.1 and 0.4: halfway, so prior halfway between 0.8 and 0.5 (np.interp agrees).
    assert study_report.first_crossing(acc, prior, 0.25) == pytest.approx(np.interp(0.25, acc[:3], prior[:3]))
    assert study_report.first_crossing(acc, prior, 0.4) == pytest.approx(0.5)  # reached exactly at a point
    assert study_report.first_crossing(acc, prior, 0.0) == 1.0  # at the start
    assert study_report.first_crossing(acc, prior, 0.95) is None  # never reached
    kl = [0.0, None, 12.0]  # a missing point is skipped, not read as a crossing
    assert study_report.first_crossing(kl, [1.0, 0.7, 0.4], 6.0) == pytest.approx(0.7)


def _run(lr, seed, curves):
    """A demo results.json with arms sdft and sft whose stage-1 curves are (task-1 accuracy, prior)."""
    def arm(points):
        rows = [{"step": 20 * i, "T1": a, "prior:rev": p, "prior:dup": p, "prior:cyc": p} for i, (a, p) in enumerate(points)]
        return {"columns": ["T1", "T2"], "curves": [rows, rows]}
    return {"lr": lr, "seed": seed, "methods": {name: arm(points) for name, points in curves.items()}}


def test_the_rate_rule_takes_the_largest_rate_where_both_arms_learn_and_still_remember():
    learns = [(0.0, 1.0), (0.3, 0.5), (0.5, 0.2)]
    forgets_all = [(0.0, 1.0), (0.6, 0.2), (0.9, 0.05)]
    never = [(0.0, 1.0), (0.1, 0.9), (0.2, 0.8)]
    runs = [_run(lr, s, {"sdft": learns, "sft": learns if lr < 3e-4 else forgets_all})
            for lr in study.RATES for s in study.VALIDATION_SEEDS]
    assert study.choose_rate(runs)[0] == 1e-4  # 3e-4: sft's prior skills end below 0.10
    runs = [_run(lr, s, {"sdft": never, "sft": learns}) for lr in study.RATES for s in study.VALIDATION_SEEDS]
    rate, why = study.choose_rate(runs)
    assert rate == study.FALLBACK_RATE and "none qualifies" in why
    runs = [_run(lr, s, {"sdft": learns if s == 100 else never, "sft": learns})
            for lr in study.RATES for s in study.VALIDATION_SEEDS]
    assert study.choose_rate(runs)[0] == study.FALLBACK_RATE  # one validation seed is not enough


def test_frontier_is_each_seeds_best_rate_among_those_that_reach_the_level():
    rec = lambda lr, seed, r: {"phase": "A", "arm": "sdft", "pretrain_seed": 0, "seed": seed, "lr": lr,  # noqa: E731
                               "retention_at_accuracy": {"0.25": r}}
    data = {"runs": [rec(3e-5, 0, None), rec(1e-4, 0, 0.4), rec(3e-4, 0, 0.6),
                     rec(3e-5, 1, None), rec(1e-4, 1, None), rec(3e-4, 1, None)]}
    assert study_report.frontier(data, "A", "sdft", "retention_at_accuracy", 0.25) == {(0, 0): 0.6, (0, 1): None}


def test_phase_commands_are_the_preregistered_grid():
    a = study.phase_command("A")
    assert "--sweep=seed=[0,1,2,3,4]" in a and "--sweep=demo.lr=[3e-05,0.0001,0.0003]" in a
    assert f"--config=configs/demo.py:methods={study.ARMS}" in a and "--config.demo.curve_every=20" in a
    b = study.phase_command("B", 1e-4)
    assert "--config.demo.pretrain.seed=1" in b and "--config.demo.lr=0.0001" in b


def test_the_doc_block_is_the_committed_json_rendered():
    """docs/DEMO.md's study block is what `study_report render` makes of docs/results/demo_study.json."""
    import json
    import os
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    data = json.load(open(os.path.join(repo, "docs", "results", "demo_study.json")))
    doc = open(os.path.join(repo, "docs", "DEMO.md")).read()
    block = doc.split("<!-- results:study:begin -->\n", 1)[1].split("\n<!-- results:study:end -->", 1)[0]
    assert block == study_report.markdown(data, "study.png")


def test_verdicts_follow_the_amendment():
    from sdft_jax.experiments import stats
    up, around = stats.paired([0.5, 0.6, 0.8, 0.7], [0.1, 0.2, 0.3, 0.2]), stats.paired([0.1, -0.1, 0.2], [0, 0, 0])
    assert study_report.verdict(up, "positive") == "holds" and study_report.verdict(up, "negative") == "does not hold"
    assert study_report.verdict(around, "positive") == "does not hold"
    assert study_report.verdict(around, "equal") == "no difference detected"
    assert study_report.verdict(up, "equal") == "a difference: does not hold"
    assert study_report.verdict(stats.paired([0.1], [0.0]), "positive").startswith("undetermined")
    drop = stats.paired([0.2, 0.3], [1.0, 1.0])
    assert study_report.verdict(drop, "drop") == "holds"
    d = study_report._diff({(0, 0): 0.5, (0, 1): None}, {(0, 0): 0.1, (0, 1): 0.3})
    assert d["n"] == 1 and d["undefined"] == (1, 0)


def _headline_arm(acc, prior, end1, end2, teacher2):
    """One arm of a 2-stage demo result: stage-1 curve (task-1 accuracy, prior skills), the rows after
    stage 1 and 2 as (task 1, task 2, prior), the stage-1 model's teacher accuracy on task 2."""
    columns = ["T1", "T2", "teacher:T1", "teacher:T2", "prior:cyc", "prior:dup", "prior:rev"]
    row = lambda t1, t2, p, teacher: [t1, t2, 1.0, teacher, p, p, p]  # noqa: E731
    curve1 = [{"step": 20 * i, **dict(zip(columns, row(a, 0.0, p, 1.0))), "kl": 5.0 * i}
              for i, (a, p) in enumerate(zip(acc, prior))]
    matrix = [row(*end1, teacher2), row(*end2, teacher2)]
    curve2 = [{"step": 0, **dict(zip(columns, matrix[0]))}, {"step": 20, **dict(zip(columns, matrix[1])), "kl": 9.0}]
    return {"columns": columns, "base_row": row(0.0, 0.0, 1.0, 1.0), "matrix": matrix, "curves": [curve1, curve2],
            "kl_to_base_after_stage": [12.5, 20.0],
            "summary": {"stages": [{"task": "T1"}, {"task": "T2"}], "base_prior_accuracy": 1.0}}


def test_headline_matches_the_arms_at_the_best_accuracy_every_arm_reaches():
    from sdft_jax.experiments.demo.headline import headline
    results = {"seed": 3, "lr": 3e-4, "methods": {
        "sdft": _headline_arm([0.0, 0.2, 0.6, 0.8], [1.0, 0.9, 0.7, 0.6], (0.8, 0.0, 0.6), (0.1, 0.4, 0.3), 0.25),
        "sft": _headline_arm([0.0, 0.1, 0.3, 0.5], [1.0, 0.6, 0.4, 0.2], (0.5, 0.0, 0.2), (0.0, 0.9, 0.1), 0.5)}}
    lines = headline(results)
    rows = {line.split()[0]: line.split() for line in lines if line.split() and line.split()[0] in ("SDFT", "SFT")}
    # level 0.5 (SFT's best); SDFT first reaches it between 0.2 (prior 0.9) and 0.6 (0.7): 0.9 - 0.75 * 0.2
    assert rows["SDFT"][1:] == ["0.750", "0.800", "0.600", "12.5", "0.250", "|", "0.400", "0.100", "0.300"]
    assert rows["SFT"][1:] == ["0.200", "0.500", "0.200", "12.5", "0.500", "|", "0.900", "0.000", "0.100"]
    assert any(line.startswith("prior@0.50: the prior skills (base 1.000)") for line in lines)
    results["methods"]["sft"] = _headline_arm([0.0, 0.0, 0.05, 0.02], [1.0, 0.6, 0.4, 0.2], (0.02, 0, 0.2), (0, 0, 0), 1)
    lines = headline(results)  # SFT learned nothing: no accuracy to match at, and the cells say so
    assert [line.split()[1] for line in lines if line.split()[0] in ("SDFT", "SFT")] == ["-", "-"]
    assert any("SFT's best task-1 accuracy in stage 1 is 0.050: no accuracy to match" in line for line in lines)


def test_outcomes_read_h4_h7_and_the_audit_as_stated():
    """H4 from the rejection runs' best accuracy, H7 from the signs on both bases, the audit's share."""
    curve = lambda acc, prior: {"acc": acc, "prior": prior}  # noqa: E731
    rec = lambda phase, arm, seed, retention, prior: {  # noqa: E731
        "phase": phase, "arm": arm, "pretrain_seed": int(phase == "B"), "seed": seed, "lr": 1e-4,
        "retention_at_accuracy": {"0.25": retention, "0.5": None}, "retention_at_kl": {"20": None, "30": None},
        "stage1_prior": prior, "stage1_max_task1": 0.02 if arm == "rejection" else 0.6,
        "stage2_task2": 0.5, "teacher_task2_export_stage1": 0.5, "teacher_task2_base": 1.0,
        "curves": [curve([0.0, 0.02], [1.0, prior])], "cut_answers": 1, "scored_answers": 1000}
    runs = []
    for seed in range(3):
        for phase, flip in (("A", 1), ("B", -1)):  # B's sdft - sft retention has the opposite sign
            runs += [rec(phase, "sdft", seed, 0.5, 0.6), rec(phase, "sft", seed, 0.5 - 0.1 * flip - 0.01 * seed, 0.4),
                     rec(phase, "sft@plain", seed, 0.5, 0.5), rec(phase, "rejection", seed, None, 0.97)]
    lines = study_report.outcomes({"runs": runs, "r_star": 1e-4})
    h4 = next(line for line in lines if line.startswith("- **H4**"))
    assert "best stage-1 task-1 accuracy 0.020 over 3 runs (holds)" in h4 and "(base 1.000)" in h4 and "0.0001 0.970" in h4
    h7 = next(line for line in lines if line.startswith("- **H7**"))
    assert "retention at accuracy 0.25: sdft - sft: A mean above 0, B mean below 0 (not the same)" in h7
    assert "prior skills, end of stage 1: sdft - sft: A mean above 0, B mean above 0 (same)" in h7
    assert lines[-1].endswith("0.10% (holds).")  # 24 of 24000 answers cut: every arm-run is evidence
