"""The fictional-knowledge corpus: deterministic, facts invented and consistent, held-out questions
never seen in training, rows the data pipeline reads; the strict / lenient scorer on hand-written
right, partial and wrong answers."""
import json

from sdft_jax.eval.scorers import score_knowledge_detailed
from sdft_jax.experiments.knowledge import corpus


def test_same_seed_same_corpus_other_seed_other_facts():
    a, b, c = corpus.build(20, seed=3), corpus.build(20, seed=3), corpus.build(20, seed=4)
    assert json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)
    names_a, names_c = ({r["title"] for r in x["train/train.jsonl"]} for x in (a, c))
    assert len(names_a) == 20 and names_a.isdisjoint(names_c)


def test_facts_are_distinct_stated_in_the_article_and_heldout_questions_are_new_words_for_trained_facts():
    cs = corpus.companies(40, seed=0)
    for attr in ("name", "founder", "city", "year", "product"):
        assert len({c[attr] for c in cs}) == 40, attr
    parts = corpus.build(40, seed=0)
    train, val, test = parts["train/train.jsonl"], parts["heldout/val.jsonl"], parts["heldout/test.jsonl"]
    assert len(train) == len(val) == len(test) == 40 * 4
    train_questions = {r["question"] for r in train}
    trained_facts = {(r["title"], r["answer"]) for r in train}
    for r in val + test:
        assert r["question"] not in train_questions
        assert (r["title"], r["answer"]) in trained_facts  # the same facts, other words
    for r in train:
        assert r["answer"] in r["article"] and r["title"] in r["article"]
        assert r["answer"] not in r["forbidden"] and len(r["forbidden"]) == 39


def test_ood_questions_need_the_facts_without_naming_the_company():
    cs = {c["name"]: c for c in corpus.companies(30, seed=1)}
    rows = corpus.build(30, seed=1)["ood/test.jsonl"]
    assert len(rows) == 30 * 3
    for r in rows:
        c = cs[r["title"]]
        if r["kind"] == "ood_compare":
            a, b = (cs[n] for n in r["first_of"])
            assert r["answer"] == min((a, b), key=lambda x: int(x["year"]))["name"]
        else:
            assert c["name"] not in r["question"]
            assert r["answer"] == (c["founder"] if r["kind"] == "ood_founder" else c["city"])


def test_written_rows_are_a_knowledge_dataset(tmp_path):
    counts = corpus.write(str(tmp_path / "k"), n=10, seed=0)
    from sdft_jax.data import prepare
    assert counts == {"train/train.jsonl": 40, "heldout/val.jsonl": 40, "heldout/test.jsonl": 40, "ood/test.jsonl": 30,
                      "oracle/test.jsonl": 40}
    oracle = prepare("demonstrations", str(tmp_path / "k" / "oracle"), str(tmp_path / "tfds"))["test"][0]
    raw = json.loads(oracle["raw"])
    assert oracle["demonstration"] == raw["article"] and raw["answer"] not in oracle["demonstration"].split(
        "Answer:")[1:]  # the article alone, no "Answer:" line
    from sdft_jax.data import prepare
    train = prepare("knowledge", str(tmp_path / "k" / "train"), str(tmp_path / "tfds"))["train"]
    held = prepare("knowledge", str(tmp_path / "k" / "heldout"), str(tmp_path / "tfds"))
    assert len(train) == 40 and sorted(held) == ["test", "validation"]
    ex = train[0]
    raw = json.loads(ex["raw"])
    assert ex["prompt"] == raw["question"]
    assert raw["article"] in ex["demonstration"] and ex["demonstration"].endswith(f"Answer: {raw['answer']}")


def test_strict_and_lenient_on_right_partial_and_wrong_answers():
    year = {"answer": "1873", "required": ["1873"], "forbidden": ["1902", "1911"]}
    assert score_knowledge_detailed("It was founded in 1873.", year) == {"strict": 1.0, "lenient": 1.0}
    assert score_knowledge_detailed("1873, or perhaps 1902.", year) == {"strict": 0.0, "lenient": 0.0}
    assert score_knowledge_detailed("Around 1900.", year) == {"strict": 0.0, "lenient": 0.0}
    assert score_knowledge_detailed("In 18730 units.", year) == {"strict": 0.0, "lenient": 0.0}  # whole words
    both = {"answer": "Zorin Vael, 1873", "required": ["Zorin Vael", "1873"], "forbidden": ["1902"]}
    assert score_knowledge_detailed("Zorin Vael founded it in 1873", both) == {"strict": 1.0, "lenient": 1.0}
    assert score_knowledge_detailed("Zorin Vael founded it.", both) == {"strict": 0.0, "lenient": 1.0}
    compare = {"answer": "Kelmar Works", "required": ["Kelmar Works"], "forbidden": [],
               "first_of": ["Stravo Labs", "Kelmar Works"]}
    assert score_knowledge_detailed("Kelmar Works was founded before Stravo Labs.", compare)["strict"] == 1.0
    assert score_knowledge_detailed("Stravo Labs came first, then Kelmar Works.", compare)["strict"] == 0.0
    assert score_knowledge_detailed("I do not know.", compare)["lenient"] == 0.0
    legacy = {"answer": "blue whale"}  # rows without listed facts keep the verbatim / every-word rule
    assert score_knowledge_detailed("the whale is blue", legacy) == {"strict": 0.0, "lenient": 1.0}
