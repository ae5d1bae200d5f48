"""The teacher diagnosis (sdft_jax.experiments.knowledge.diagnose): where the fact starts in a completion, and
the script end to end on the tiny model (three contexts, two first-token measurements)."""
import json

from sdft_jax.experiments.knowledge import diagnose
from tests import hf_fixtures


def test_fact_position_counts_the_tokens_before_the_first_fact_found():
    tok = hf_fixtures.tokenizer()  # byte-level: one token per ASCII character
    assert diagnose.fact_position(tok, "1918, by Drantark", ["1918"]) == 0
    assert diagnose.fact_position(tok, "It was 1918.", ["1918"]) == len("It was ")
    assert diagnose.fact_position(tok, "Founded by drantark V. in 1918", ["1918", "Drantark"]) == len("Founded by ")
    assert diagnose.fact_position(tok, "No idea.", ["1918"]) is None


def test_diagnose_runs_on_the_tiny_model(tmp_path, monkeypatch):
    monkeypatch.setenv("SDFT_JAX_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "diag.json"
    assert diagnose.main(["--model", "tiny", "--examples", "3", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert set(result["contexts"]) == {"no_context", "article_only", "teacher_context"}
    for ctx in result["contexts"].values():  # every row is either scored or counted as too long
        assert ctx["n"] + ctx["skipped_too_long"] == 3 and 0.0 <= ctx["strict"] <= ctx["lenient"] <= 1.0
    doc = tmp_path / "doc.md"  # the report goes into the doc's `teacher` block, the other block stays
    doc.write_text("<!-- results:begin -->\nround 1\n<!-- results:end -->\n<!-- results:teacher:begin -->\n"
                   "<!-- results:teacher:end -->\n")
    assert diagnose.main(["--report", str(out), str(out), "--update", str(doc)]) == 0
    text = doc.read_text()
    assert "\nround 1\n" in text and "| (c) the SDFT teacher context (article + answer) | " in text
    assert text.count("tiny strict | lenient") == 2
    assert set(result["first_tokens"]) == {"student_sampled_t1", "student_greedy", "teacher_greedy"}
    for measure in result["first_tokens"].values():
        fact = measure["fact"]
        assert fact["n"] + measure["skipped_too_long"] == 3 and len(fact["positions"]) == fact["n"]
        if fact["n"]:
            assert abs(fact["within_skipped"] + fact["after_skipped"] + fact["absent"] - 1) < 1e-9


def test_year_slot_finds_any_year():
    tok = hf_fixtures.tokenizer()
    assert diagnose.year_slot(tok, "It was founded in 1999 by") == len("It was founded in ")
    assert diagnose.year_slot(tok, "Founded by Alex, 12 people") is None
