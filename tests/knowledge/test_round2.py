"""The knowledge experiment's second-round report (sdft_jax.experiments.knowledge.round2): the registered bars
read on known numbers, Wilson intervals deciding what is claimed, and the doc's blocks as the committed JSON
rendered."""
import os

import pytest

from sdft_jax.experiments.knowledge import round2
from tests.test_train import REPO


def _run(methods: dict, n: int = 40, base_he: float = 0.5) -> dict:
    """A collected compare run: each method's test scores at one chosen point of a 2 x 2 grid."""
    points = [{"optim.lr": lr, "steps": s} for lr in (1e-4, 5e-4) for s in (20, 40)]
    base = {"heldout": 0.0, "heldout/knowledge_lenient": 0.0, "ood": 0.1, "ood/knowledge_lenient": 0.1,
            "oracle_rag": 0.6, "oracle_rag/knowledge_lenient": 0.6, "drift": 0.7, "humaneval": base_he}
    return {"examples": {"val": 30, "heldout": n, "ood": n, "oracle_rag": n, "humaneval": 20},
            "columns": list(base), "base": base, "machine": "test box", "select": "val", "tie_break": "",
            "sweep": ["optim.lr=[0.0001,0.0005]", "steps=[20,40]"],
            "ceiling": {}, "methods": {m: {"chosen": points[i], "test": {**base, **t}, "recipe": {"loss.skip_first_tokens": 0},
                                           "sweep": [{"point": p, "status": "done", "seconds": 1.0,
                                                      "validation": {"val": v if p == points[i] else 0.0}}
                                                     for p in points]}
                                       for m, (i, v, t) in methods.items()}}


def _line(lines: list[str], label: str) -> str:
    return next(line for line in lines if line.startswith(f"- **{label} "))


def test_step3_predictions_are_read_against_their_bars_and_intervals():
    q = _run({"sdft": (0, 0.2, {"heldout": 0.125, "drift": 0.8, "humaneval": 0.60}),
              "sft": (3, 0.6, {"heldout": 0.5, "drift": 1.5, "humaneval": 0.05}),
              "offline": (1, 0.2, {"heldout": 0.15, "drift": 1.1, "humaneval": 0.40})})
    lines = round2.outcomes_step3(q)
    assert _line(lines, "P6").startswith("- **P6 held.**") and "0.125 [0.05, 0.26]" in _line(lines, "P6")
    assert _line(lines, "P7").startswith("- **P7 held.**")  # 20 of 40 vs 5 of 40: the intervals do not overlap
    assert _line(lines, "P8").startswith("- **P8 held.**") and "SDFT -0.100, SFT +0.450" in _line(lines, "P8")
    assert _line(lines, "P9").startswith("- **P9 held.**") and "+0.025" in _line(lines, "P9")
    # A gap of exactly the bar (2 of 40) is on it, whatever the floating point of 8/40 - 6/40.
    edge = _run({"sdft": (0, 0.2, {"heldout": 6 / 40, "drift": 0.8}), "offline": (1, 0.2, {"heldout": 8 / 40, "drift": 1.1})})
    assert _line(round2.outcomes_step3(edge), "P9").startswith("- **P9 held.**")
    # SDFT drifts less, but its HumanEval is one problem above SFT's: not claimed.
    near = _run({"sdft": (0, 0.2, {"heldout": 0.1, "drift": 0.8, "humaneval": 0.45}),
                 "sft": (1, 0.2, {"heldout": 0.1, "drift": 1.5, "humaneval": 0.40})})
    p8 = _line(round2.outcomes_step3(near), "P8")
    assert p8.startswith("- **P8 not separated.**") and "the HumanEval intervals overlap" in p8
    # SFT ahead by 2 questions of 40: the intervals overlap, so the difference is not claimed.
    close = _run({"sdft": (0, 0.2, {"heldout": 0.10, "drift": 0.8, "humaneval": 0.45}),
                  "sft": (1, 0.2, {"heldout": 0.15, "drift": 0.7, "humaneval": 0.50})})
    lines = round2.outcomes_step3(close)
    assert _line(lines, "P7").startswith("- **P7 not separated.**") and "no difference is claimed" in _line(lines, "P7")
    assert _line(lines, "P8").startswith("- **P8 did not hold.**")  # SFT drifted less
    assert not any(line.startswith("- **P9") for line in lines)  # no offline run, no P9


def test_step2_reads_the_loss_skip_and_whether_sfts_choice_is_at_the_grids_edge():
    skip0 = _run({"sdft": (0, 0.0, {"heldout": 0.0})}, n=120)
    grid = _run({"sft": (3, 0.3, {"heldout": 0.2, "drift": 2.5})}, n=120)
    p4, p5 = round2.outcomes_step2(skip0, grid)
    assert p4.startswith("- **P4 held.**") and "`loss.skip_first_tokens=0`" in p4
    assert p5.startswith("- **P5 held, provisionally: the choice is at the grid's edge.**")
    assert "at the grid's edge (largest optim.lr, largest steps)" in p5
    skip0["methods"]["sdft"]["sweep"][1]["status"] = "failed"  # a point that did not finish: no verdict
    assert round2.outcomes_step2(skip0, None)[0].startswith("- **P4 incomplete.**")
    grid = _run({"sft": (1, 0.3, {"heldout": 0.1, "drift": 2.5})}, n=120)  # lr 1e-4 x 40 steps
    p5 = round2.outcomes_step2(None, grid)[0]
    assert p5.startswith("- **P5 did not hold, provisionally") and "(smallest optim.lr, largest steps)" in p5
    blocks = round2.step2_markdown(skip0, grid)
    assert "| SDFT (optim.lr=0.0001,steps=20) | 0.000 [0.00, 0.03]" in blocks
    assert blocks.startswith("Grids: SDFT optim.lr=[0.0001,0.0005] x steps=[20,40] (4 points); SFT ")


def test_the_doc_blocks_are_the_committed_json_rendered():
    """docs/EXPERIMENTS.md's round-2 blocks are what `round2 render` makes of docs/results/knowledge_r2_*.json."""
    doc = open(os.path.join(REPO, "docs", "EXPERIMENTS.md")).read()
    blocks = round2.render(os.path.join(REPO, "docs", "results"))
    assert {"round2-step2", "round2-paper"} <= set(blocks)  # step 2's two runs are committed
    for name, text in blocks.items():
        assert doc.split(f"<!-- results:{name}:begin -->\n", 1)[1].split(f"\n<!-- results:{name}:end -->", 1)[0] == text


def test_sdft_at_sfts_budget_gets_its_own_table_and_verdict():
    skip0 = _run({"sdft": (0, 0.0, {"heldout": 0.0})}, n=120)
    grid = _run({"sft": (3, 0.8, {"heldout": 0.8, "drift": 2.9})}, n=120)
    long = _run({"sdft": (2, 0.15, {"heldout": 0.12})}, n=120)
    text = round2.step2_markdown(skip0, grid, long)
    assert "Amendment 2, SDFT at SFT's budget:" in text
    assert "| SDFT at SFT's budget: SDFT (optim.lr=0.0005,steps=20) | 0.120 [0.07, 0.19]" in text
    assert text.splitlines()[-1].startswith("- **P4b did not hold: SDFT's zero in step 2 was its budget.**")
    assert "| SDFT (optim.lr=0.0001,steps=20) | 0.000 [0.00, 0.03]" in text  # step 2's own choice is unchanged
    long["examples"] = {**long["examples"], "heldout": 60}
    with pytest.raises(ValueError, match="different bases or questions"):
        round2.step2_markdown(skip0, grid, long)


def test_the_extended_step3_grid_is_judged_again_after_the_registered_result():
    registered = _run({"sdft": (0, 0.0, {"heldout": 0.0, "drift": 0.7, "humaneval": 0.5}),
                       "sft": (2, 0.1, {"heldout": 0.025, "drift": 1.3, "humaneval": 0.2})})
    grid6 = _run({"sdft": (0, 0.0, {"heldout": 0.0, "drift": 0.7, "humaneval": 0.5}),
                  "sft": (3, 0.5, {"heldout": 0.5, "drift": 2.0, "humaneval": 0.1})})  # lr 5e-4 x 40 steps: a corner
    text = round2.step3_markdown(registered, grid6)
    head, amended = text.split("\nAmendment 3, every method's grid extended to optim.lr=[0.0001,0.0005] x steps=[20,40]:\n")
    assert "- **P6 did not hold.**" in head and "(amendment 3)" not in head  # the registered verdicts come first
    assert "- **P7 (amendment 3) held.** SFT 0.500 [0.35, 0.65] vs SDFT 0.000 [0.00, 0.09]." in amended
    assert amended.splitlines()[-1] == ("- Chosen at the extended grid's largest value, so provisional: "
                                        "SFT (largest optim.lr, largest steps).")
    grid6["base"] = {**grid6["base"], "drift": 0.71}  # another base: not one experiment
    with pytest.raises(ValueError, match="step 3's runs evaluated different bases"):
        round2.step3_markdown(registered, grid6)


def test_qwens_sdft_with_no_loss_skip_is_read_against_one_of_thirty():
    registered = _run({"sdft": (0, 0.0, {"heldout": 0.0, "drift": 0.7}), "sft": (2, 0.1, {"heldout": 0.025, "drift": 1.3})})
    one = _run({"sdft": (1, 1 / 30, {"heldout": 0.025})})  # 1 of 30 at one point: the bar's edge, held
    one["methods"]["sdft"]["recipe"]["loss.skip_first_tokens"] = 0
    text = round2.step3_markdown(registered, skip0=one)
    assert "Amendment 4, SDFT with no loss skip:" in text
    assert text.splitlines()[-1].startswith("- **P6b held.** SDFT with `loss.skip_first_tokens=0` on step 3's grid")
    two = _run({"sdft": (1, 2 / 30, {"heldout": 0.05})})
    assert round2.outcome_p6b(two).startswith("- **P6b did not hold.**")
    three = _run({"sdft": (3, 3 / 30, {"heldout": 0.1})})
    assert round2.outcome_p6b(three).startswith("- **P6b did not hold: the loss skip hid the signal at 0.5B.**")
