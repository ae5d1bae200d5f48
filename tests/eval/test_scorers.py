"""Scorers on hand-written completions and on the real rows of ../shared/data."""
import json
import math
import os

import pytest

from sdft_jax.data.records import react_demonstration, science_answer_block
from sdft_jax.eval import pass_at_k, score_completion, score_knowledge_detailed, set_knowledge_judge
from tests.conftest import shared_data_dir

TOOL_ROW = {"golden_answer": [{"Action": "searchImages", "Action_Input": '{"color": "wild", "page": 2}'},
                              {"Action": "getFacts", "Action_Input": '{"category": "habits"}'}]}


def test_tooluse_scorer_by_hand():
    good = ('Thought: I need images.\nAction: searchImages\nAction Input: {"page": 2, "color": "wild"}\n'
            'Observation: ...\nThought: now facts\nAction: getFacts\nAction Input: {"category": "habits"}\n')
    assert score_completion("tooluse", good, TOOL_ROW) == 1.0
    assert score_completion("tooluse", good.replace("getFacts", "getFact"), TOOL_ROW) == 0.0  # wrong action
    assert score_completion("tooluse", good.replace('"habits"', '"habitat"'), TOOL_ROW) == 0.0  # wrong argument
    assert score_completion("tooluse", good.replace('{"category": "habits"}', '{"category": '), TOOL_ROW) == 0.0
    one_call = 'Action: searchImages\nAction Input: {"color": "wild", "page": 2}'
    assert score_completion("tooluse", one_call, TOOL_ROW) == 0.0  # missing a call
    for garbage in ["", "Action:", "Action Input: {}", "\x00\x01 ]]", None]:
        assert score_completion("tooluse", garbage, TOOL_ROW) == 0.0


def test_science_medical_knowledge_exact_match_by_hand():
    assert score_completion("science", "<reasoning>x</reasoning>\n<answer>\nB\n</answer>", {"answer": "B"}) == 1.0
    assert score_completion("science", "<answer>A</answer> then <answer>C</answer>", {"answerKey": "C"}) == 1.0
    assert score_completion("science", "The answer is B", {"answer": "B"}) == 0.0  # format required
    assert score_completion("science", "<answer>D</answer>", {"answer": "B"}) == 0.0
    med = {"options": {"A": "Folate deficiency", "D": "Parvovirus B19 infection"}, "answer_idx": "D",
           "answer": "Parvovirus B19 infection"}
    assert score_completion("medical", "Most likely parvovirus B19 infection.", med) == 1.0
    assert score_completion("medical", "The answer is (D).", med) == 1.0
    assert score_completion("medical", "The answer is A.", med) == 0.0
    know = {"answer": "May 2025"}
    assert score_knowledge_detailed("It happened in May 2025.", know) == {"strict": 1.0, "lenient": 1.0}
    assert score_knowledge_detailed("2025, in May", know) == {"strict": 0.0, "lenient": 1.0}
    assert score_completion("knowledge", "In June.", know) == 0.0
    set_knowledge_judge(lambda completion, example: 1.0)
    try:
        assert score_completion("knowledge", "In June.", know) == 1.0
    finally:
        set_knowledge_judge(None)
    assert score_completion("exact_match", "Let me think.\nThe answer is 42.", {"answer": "42"}) == 1.0
    assert score_completion("exact_match", "41", {"answer": "42"}) == 0.0
    with pytest.raises(ValueError, match="no scorer"):
        score_completion("poetry", "x", {})


def test_golden_answers_of_real_rows_score_one_and_wrong_ones_zero():
    root = shared_data_dir()
    rows = [json.loads(l) for l in open(os.path.join(root, "tooluse", "sdft_tooluse_eval.jsonl"))]
    for row in rows:
        gold = react_demonstration(row["golden_answer"], "", 0)
        assert score_completion("tooluse", "Thought: ok\n" + gold, row) == 1.0, row["golden_answer"]
        wrong = gold.replace("Action: ", "Action: x", 1)
        assert score_completion("tooluse", wrong, row) == 0.0
    sci = [json.loads(l) for l in open(os.path.join(root, "science", "sdft_science_eval.jsonl"))]
    for row in sci:
        assert score_completion("science", science_answer_block(row["answer"], "because"), row) == 1.0
        other = "A" if row["answer"] != "A" else "B"
        assert score_completion("science", science_answer_block(other), row) == 0.0
    med = json.load(open(os.path.join(root, "medical", "huatuogpt_o1_demo.json")))
    assert all(score_completion("medical", row["Response"] + f"\nThe answer is {row['answer_idx']}.", row) == 1.0
               for row in med if row.get("answer_idx"))
    assert sum(score_completion("medical", "I am not sure.", row) for row in med) == 0.0


def test_pass_at_k_matches_closed_form():
    for n, c, k in [(10, 3, 1), (10, 3, 5), (20, 0, 4), (5, 5, 2), (8, 7, 2)]:
        expected = 1.0 - (math.comb(n - c, k) / math.comb(n, k) if n - c >= k else 0.0)
        assert abs(pass_at_k(n, c, k) - expected) < 1e-12
    assert pass_at_k(10, 3, 1) == pytest.approx(0.3)
