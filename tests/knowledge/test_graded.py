"""Amendment 5's graded measure (sdft_jax/experiments/knowledge/graded.py): the answer log-probs against
transformers, the verdicts against their bars, a cached run end to end and the doc block against its JSON."""
import json
import os
import shutil

import numpy as np
import pytest

from sdft_jax.experiments.knowledge import graded
from sdft_jax.model import load_pretrained
from tests import hf_fixtures as hf
from tests.test_train import REPO


def _rows(tmp_path):
    path = tmp_path / "heldout" / "test.jsonl"
    path.parent.mkdir(parents=True)
    facts = [("Foo Works", "1918", ["1927", "1830"]), ("Bar Ltd", "Zed Quor", ["Al Bin", "Mo Ra"]),
             ("Baz Co", "1927", ["1918", "1830"])]  # Foo's and Baz's years: one attribute, two questions
    with open(path, "w") as f:
        for title, answer, forbidden in facts:
            f.write(json.dumps({"question": f"When or by whom was {title} founded?", "answer": answer, "title": title,
                                "article": f"{title} was founded in {answer}.", "forbidden": forbidden}) + "\n")
    return graded.questions(str(tmp_path)), facts


def test_each_value_is_scored_as_the_reply_as_transformers_scores_it(tiny_qwen2, tmp_path):
    from sdft_jax.data.prompts import student_context
    model, ref = load_pretrained(tiny_qwen2, dtype="float32"), hf.reload_hf(tiny_qwen2)
    rows, facts = _rows(tmp_path)
    got = graded.score(model, rows, batch_size=2)
    tok = model.tokenizer
    wants = []
    for ex, (_, answer, forbidden), record in zip(rows, facts, got):
        context = student_context(tok, ex)
        want = []
        for value in [answer, *forbidden]:
            ids = tok(context + value, add_special_tokens=False).input_ids
            n = len(ids) - len(tok(context, add_special_tokens=False).input_ids)
            logits = hf.hf_logits(ref, np.asarray([ids]), np.ones((1, len(ids)), np.int64))[0]
            top = logits.max(-1, keepdims=True)
            lp = logits - top - np.log(np.exp(logits - top).sum(-1, keepdims=True))
            want.append(sum(lp[t - 1, ids[t]] for t in range(len(ids) - n, len(ids))))
        assert record["true_logp"] == pytest.approx(want[0], abs=1e-3)
        assert record["best_other_logp"] == pytest.approx(max(want[1:]), abs=1e-3)
        assert record["rank"] == 1 + sum(w >= want[0] for w in want[1:])
        assert record["logp"] == pytest.approx(want, abs=1e-3)
        wants.append(want)
    # association: a value on its own company's question minus on the attribute's other questions
    assert got[0]["association"] == pytest.approx(wants[0][0] - wants[2][1], abs=1e-3)  # "1918": Foo's, then Baz's
    assert got[2]["association"] == pytest.approx(wants[2][0] - wants[0][1], abs=1e-3)  # "1927"
    assert got[1]["association"] is None  # the only founder question: nothing to compare with


def _model(method, label, ranks, nll=1.0, association=0.0):
    questions = [{"id": f"q{i}", "true_logp": -nll, "best_other_logp": -2.0, "rank": r, "company": f"c{i // 4}",
                  "association": association + (i % 2) * 0.5} for i, r in enumerate(ranks)]
    return {"method": method, "label": label, **graded.aggregate(questions), "questions": questions}


def test_p12_and_p13_read_the_change_in_association_against_their_bars():
    result = _result([2] * 20, [2] * 20)
    smol, qwen = (f["models"] for f in result["families"].values())
    smol[1:] = [_model("sdft", "sdft", [2] * 20, association=1.9), _model("sft", "sft", [1] * 20, association=30.0)]
    qwen[1] = _model("sft", "sft", [2] * 20, association=0.2)
    p12, p13 = graded.outcomes_association(result)
    assert p12.startswith("- **P12 held.**") and "Q: sft +0.200 [+0.20, +0.20]" in p12  # every value rose by 0.2
    assert p13.startswith("- **P13 held.**") and "sdft +1.900 [+1.90, +1.90], interval above 0" in p13
    smol[1] = _model("sdft", "sdft", [2] * 20, association=2.0)
    qwen[1] = _model("sft", "sft", [2] * 20, association=0.0)
    p12, p13 = graded.outcomes_association(result)
    assert p12.startswith("- **P12 did not hold.**") and p13.startswith("- **P13 did not hold.**")
    assert "| sdft | +2.250 | +2.000 [+2.00, +2.00] | - | 20 / 0 | +2.000 [+2.00, +2.00] | - |" in (
        graded.association_markdown(result))
    smol[1]["questions"][0]["association"] += 5.0  # one value of company c0 rose: 1.0 per company of 5
    c = graded.association_change_by_company(smol[0], smol[1])
    assert c["n"] == 5 and c["mean"] == pytest.approx(2.25) and c["positive"] == 5


def _result(smol_sdft_ranks, qwen_sft_ranks):
    base = [2] * 20
    return {"families": {
        "smollm2_135m": {"title": "S", "companies": 30, "models": [
            _model("base", "base", base), _model("sdft", "sdft", smol_sdft_ranks),
            _model("sft", "sft", [1] * 16 + [3] * 4)]},
        "qwen2_5_0_5b": {"title": "Q", "companies": 10, "models": [
            _model("base", "base", base), _model("sft", "sft", qwen_sft_ranks)]}}}


def test_p10_and_p11_are_read_against_their_bars():
    p10, p11 = graded.outcomes(_result([1] * 2 + [2] * 18, [1] * 8 + [2] * 12))
    assert p10.startswith("- **P10 held.**") and "sdft +0.100 (p 0.5)" in p10  # exactly on the bar, 2 gained
    assert p11.startswith("- **P11 held.**") and "S, held: SFT 0.800 (bar >= 0.75)" in p11 and "p 0.00781" in p11
    p10, p11 = graded.outcomes(_result([1] * 7 + [2] * 13, [1] * 2 + [2] * 18))
    assert p10.startswith("- **P10 did not hold.**") and p10.endswith("Over a bar: sdft.")
    assert p11.startswith("- **P11 did not hold.**") and "Q, did not hold: SFT 0.100" in p11  # +0.100 but p 0.5
    base, sdft = [2] * 100 + [1] * 2 + [2] * 18, [1] * 14 + [2] * 106  # +0.10 on the bar, but 14 gained and 2 lost
    lopsided = {"families": {"smollm2_135m": {"title": "S", "companies": 30, "models": [
        _model("base", "base", base), _model("sdft", "sdft", sdft), _model("sft", "sft", [1] * 120)]}}}
    p10 = graded.outcomes(lopsided)[0]
    assert p10.startswith("- **P10 did not hold.**") and "sdft +0.100 (p 0.00418)" in p10
    text = graded.markdown(_result([1] * 2 + [2] * 18, [1] * 8 + [2] * 12))
    assert "| sdft | 0.100 [0.03, 0.30] (2/20) | 2 / 0 | 0.5 | 1.000 | +0.000 | +0.000 | 1.90 |" in text
    assert "| base | 0.000 [0.00, 0.16] (0/20) |  |  | 1.000 |  |  | 2.00 |" in text
    assert text.index("S: 20 held-out") < text.index("Q: 20 held-out")  # the families in the result's order


def test_run_scores_each_model_once_and_names_a_missing_export(tiny_qwen2, tmp_path, monkeypatch):
    monkeypatch.setenv("SDFT_JAX_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("SDFT_REAL_MODELS", str(tmp_path / "real"))
    shutil.copytree(tiny_qwen2, tmp_path / "real" / "tiny")
    shutil.copytree(tiny_qwen2, tmp_path / "runs" / "r" / "sft" / "p" / "export")  # the base again, as a "trained" model
    families = {"tiny": dict(title="tiny", companies=3, base="tiny", models=[
        ("base", "base", "", ""), ("sft", "SFT", "r/sft", "p")])}
    result = graded.run(str(tmp_path / "g.json"), str(tmp_path / "runs"), families)
    base, sft = result["families"]["tiny"]["models"]
    assert base["n"] == sft["n"] == 12 and base["questions"] == sft["questions"]  # 3 companies x 4 held-out questions
    assert graded.paired_with_base(base, sft) == {"gained": 0, "lost": 0, "p": 1.0}
    assert json.load(open(tmp_path / "g.json")) == result
    shutil.rmtree(tmp_path / "real" / "tiny")  # a rerun reads the cache: the models are not loaded again
    assert graded.run(str(tmp_path / "g2.json"), str(tmp_path / "runs"), families) == result
    families["tiny"]["models"].append(("sdft", "SDFT", "r/sdft", "p"))
    with pytest.raises(FileNotFoundError, match=r"r/sdft/p/export: no exported model \(tiny, SDFT\)"):
        graded.run(str(tmp_path / "g3.json"), str(tmp_path / "runs"), families)


def test_the_doc_blocks_are_the_committed_json_rendered():
    path = os.path.join(REPO, "docs", "results", "knowledge_r2_graded.json")
    if not os.path.isfile(path):
        pytest.skip("amendment 5 has not been run")
    doc, result = open(os.path.join(REPO, "docs", "EXPERIMENTS.md")).read(), json.load(open(path))
    for name, render in (("round2-graded", graded.markdown), ("round2-association", graded.association_markdown)):
        block = doc.split(f"<!-- results:{name}:begin -->\n", 1)[1].split(f"\n<!-- results:{name}:end -->", 1)[0]
        assert block == render(result)
