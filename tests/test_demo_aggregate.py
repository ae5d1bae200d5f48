"""sdft_jax.experiments.demo.aggregate on hand-made demo results: runs found under a sweep folder, the
predictions computed as stated, Spearman vs scipy, the Pareto plot and the doc block rewritten."""
import json
import os

import numpy as np
import pytest
import scipy.stats

from sdft_jax.experiments.demo import aggregate
from sdft_jax.runtime.doc_block import BEGIN, END


def _method(new, prior, kl, teacher=1.0):
    """A demo runner method record with one stage on task T1 and one prior skill."""
    return {"columns": ["T1", "prior:rev"], "matrix": [[new, prior]], "base_row": [0.0, 1.0],
            "teacher_after_stage": [{"T1": teacher}], "kl_to_base_after_stage": [kl],
            "summary": {"stages": [{"stage": 1, "task": "T1", "seen_tasks_accuracy": new, "all_new_tasks_accuracy": new,
                                    "prior_accuracy": prior}],
                        "final_new_tasks_accuracy": new, "final_prior_accuracy": prior, "base_prior_accuracy": 1.0,
                        "prior_forgetting": 1.0 - prior, "new_task_forgetting": 0.0}}


def _write(folder, lr, seed, sdft, sft):
    os.makedirs(folder, exist_ok=True)
    r = {"seed": seed, "lr": lr, "world": "style", "teacher_ceiling": {
        "student": {"T1": 0.0}, "teacher": {"T1": 0.95}, "prior": {"rev": 1.0}},
         "methods": {"sdft": _method(*sdft), "sft": _method(*sft)}}
    json.dump(r, open(os.path.join(folder, "results.json"), "w"))
    os.makedirs(os.path.join(folder, "sdft"), exist_ok=True)  # a continual results.json: not a demo run
    json.dump({"rows": []}, open(os.path.join(folder, "sdft", "results.json"), "w"))


@pytest.fixture
def sweep(tmp_path):
    # (new, prior, kl) per method; SDFT: less KL and more prior kept at each lr, except seed 1 at 1e-3.
    _write(tmp_path / "s" / "demo.lr=0.0001", 1e-4, 0, (0.5, 0.9, 1.0), (0.6, 0.5, 4.0))
    _write(tmp_path / "s" / "demo.lr=0.001", 1e-3, 0, (0.9, 0.3, 2.0), (1.0, 0.1, 6.0))
    _write(tmp_path / "t" / "seed=1", 1e-3, 1, (0.8, 0.2, 7.0), (1.0, 0.2, 5.0))
    return [str(tmp_path / "s"), str(tmp_path / "t")]


def test_runs_are_found_under_sweep_folders_and_sorted(sweep):
    runs = aggregate.load_runs(sweep)
    assert [(r["lr"], r["seed"]) for r in runs] == [(1e-4, 0), (1e-3, 0), (1e-3, 1)]
    with pytest.raises(FileNotFoundError, match="no demo results.json"):
        aggregate.load_runs([os.path.join(sweep[0], "demo.lr=0.0001", "sdft")])


def test_predictions_are_computed_from_the_runs(sweep):
    lines = aggregate.predictions(aggregate.load_runs(sweep))
    assert "student 0.000, teacher 0.950, prior skills 1.000" in lines[0] and "**holds**" in lines[0]
    assert "in 2 of 3 (learning rate, seed) pairs: **does not hold**" in lines[1]
    # Dominance by hand: SDFT (0.8, 0.2) is beaten by SFT (1.0, 0.2); SFT (0.6, 0.5) by no SDFT point
    # ((0.5, 0.9) has less new-task accuracy); SFT (1.0, 0.1) by none; SFT (1.0, 0.2) by none.
    assert "1 of 3 SDFT points are dominated by an SFT point, 0 of 3 SFT points" in lines[2]
    assert "**does not hold**" in lines[2]
    kl = [1.0, 4.0, 2.0, 6.0, 7.0, 5.0]
    forgetting = [0.1, 0.5, 0.7, 0.9, 0.8, 0.8]
    rho = scipy.stats.spearmanr(kl, forgetting).statistic
    assert f"{rho:+.2f}" in lines[3] and aggregate.spearman(kl, forgetting) == pytest.approx(rho)


def test_markdown_updates_only_the_results_block_and_writes_the_pareto_plot(sweep, tmp_path):
    doc = tmp_path / "DEMO.md"
    doc.write_text(f"# Title\nhand-written\n{BEGIN}\nold numbers\n{END}\nafter\n")
    png = tmp_path / "pareto.png"
    assert aggregate.main([*sweep, "--markdown", "--update", str(doc), "--pareto", str(png),
                           "--headline_lr", "0.001"]) == 0
    text = doc.read_text()
    assert text.startswith("# Title\nhand-written\n") and text.endswith(f"{END}\nafter\n")
    assert "old numbers" not in text and "![Pareto plot](pareto.png)" in text
    assert "Mean ± sample std over 2 seeds (0, 1)" in text  # the headline rows: lr 1e-3's two seeds
    sft_kl, prior = [6.0, 5.0], [0.1, 0.2]
    assert (f"| 0.001 | SFT | 2 | 1.000 ± 0.000 | 1.000 ± 0.000 | 0.150 ± {np.std(prior, ddof=1):.3f} | "
            f"{np.mean(sft_kl):.3f} ± {np.std(sft_kl, ddof=1):.3f} |") in text
    assert png.stat().st_size > 10_000
